"""Decode a live spike stream in real time: read spikes from Lab Streaming Layer, push behaviour.

At --rate ticks per second, serve takes every spike that arrived, decodes the behaviour at
that instant from the causal window [t - 1 s, t) (what `popdecode evaluate --causal` scores),
and pushes it to an LSL outlet: one float32 channel per behaviour dimension, stamped with the
time it decodes (with --delay D, each tick t decodes the behaviour at t - D from the same
window, stamped t - D). The input is a spike-event stream (one sample per spike: its unit's
index in the unit list of the stream's description) or a binned-count stream (one channel per unit,
labelled with the unit id, one sample per bin stamped at the bin's end); its units must be
exactly the session's, matched by label.

serve keeps going through trouble: the input may vanish (it waits, says so and resumes),
consumers may come and go, spikes may come late, twice, for unknown units or in bursts (each
dropped spike is counted), and a decode slower than a tick skips ticks (counted) instead of
queueing them. A state line every few seconds says how it goes; Ctrl-C or SIGTERM stops it
cleanly, writing --record and printing R^2 (with --truth) and the latency table. R^2 comes two
ways: decoded ticks interpolated at each true sample (what `evaluate --causal` is compared
with), and "held": the newest decoded sample already pushed at each true sample, which is what
task software reading the output has.

examples:
  popdecode replay data/store --session monkey_day3 --split test --loopback &
  popdecode serve runs/adapted --session monkey_day3 --input monkey_day3-spikes \\
      --truth monkey_day3-behavior --record live.h5 --figure live.png --loopback
"""

from __future__ import annotations

import argparse
import sys
import time


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run directory of a trained or adapted model")
    p.add_argument("--session", required=True, help="the session to decode, as the model knows it")
    p.add_argument("--input", required=True, metavar="STREAM", help="name of the LSL spike stream (events or binned)")
    p.add_argument("--rate", type=float, default=50.0, help="decoded samples per second (default 50)")
    p.add_argument("--output", default=None, metavar="STREAM", help="name of the decoded stream (default popdecode-SESSION)")
    p.add_argument("--delay", type=float, default=0.0, metavar="SECONDS",
                   help="report each sample SECONDS late: decode the behaviour at t - SECONDS from the window "
                        "ending at t, stamped t - SECONDS. Each sample is better about its own time (mihi, "
                        "0.04 s: +0.04 R^2) but arrives that much older, so a closed loop should keep 0 "
                        "(BENCHMARKS.md, 'What a causal window lacks'); evaluate --causal --delay scores it "
                        "offline (default 0)")
    p.add_argument("--readout", default=None, help="readout to decode (default: the session's first)")
    p.add_argument("--truth", default=None, metavar="STREAM",
                   help="record this behaviour stream beside the decoded one (popdecode replay's SESSION-behavior)")
    p.add_argument("--record", default=None, metavar="FILE", help="write every decoded tick (and the truth) to this HDF5 file at the end")
    p.add_argument("--figure", default=None, metavar="PNG", help="plot decoded against true behaviour at the end (needs --truth)")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--wait", type=float, default=None, metavar="S", help="give up if the input stream is not found within S seconds at start (default: wait)")
    p.add_argument("--status-every", type=float, default=5.0, metavar="S", help="seconds between state lines (default 5)")
    p.add_argument("--compile", action="store_true", help="compile the model with TorchInductor first (~40 s once, faster decodes)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the model runs (default cpu)")
    p.add_argument("--loopback", action="store_true", help="keep all LSL traffic on this machine (for trying it out and tests)")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _wait_for_input(name: str, wait: float | None, stopped) -> object | None:
    from popdecode.serve.lsl import resolve

    started = time.monotonic()
    _say(f"serve: looking for the input stream '{name}' ...")
    while not stopped():
        info = resolve(name, timeout=0.5)
        if info is not None:
            return info
        if wait is not None and time.monotonic() - started > wait:
            return None
    return None


def run(args: argparse.Namespace) -> int:
    from popdecode.errors import UserError
    from popdecode.serve.lsl import use_loopback_config

    if args.loopback:
        use_loopback_config()
    if not args.rate > 0:
        raise UserError(f"--rate must be positive samples per second (got {args.rate})")
    if args.figure and not args.truth:
        raise UserError("--figure plots decoded against true behaviour: give the truth stream with --truth")
    import torch

    from popdecode.serve.loop import ServeLoop
    from popdecode.serve.lsl import DecodedOutlet, SampleInlet, SpikeInlet, pylsl
    from popdecode.serve.online_decoder import OnlineDecoder
    from popdecode.serve.recording import Recording
    from popdecode.serve.signals import stop_on_signals

    lsl = pylsl()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA GPU; use --device cpu")
    decoder = OnlineDecoder.from_run(args.run, args.session, device=args.device, readout=args.readout,
                                     delay=args.delay)
    if args.compile:
        _say("serve: compiling the model (about 40 s the first time; cached afterwards) ...")
        decoder.model.compile_for_inference()
    decoder.warm_up()

    # A signal before the loop runs stops the waiting; once it runs, it stops the loop.
    state = {"stop": False, "loop": None}

    def stop() -> None:
        state["stop"] = True
        if state["loop"] is not None:
            state["loop"].stop()

    with stop_on_signals(stop, _say):
        info = _wait_for_input(args.input, args.wait, lambda: state["stop"])
        if info is None:
            if state["stop"]:
                return 0
            raise UserError(f"no LSL stream named '{args.input}' within {args.wait:g} s; start the sender "
                            "(e.g. popdecode replay) or check the name")
        source = SpikeInlet(args.input, decoder.unit_ids, info=info, say=_say)
        columns = [f"{decoder.readout}_{i}" for i in range(decoder.dim)]
        output = args.output or f"popdecode-{args.session}"
        sink = DecodedOutlet(name=output, columns=columns, rate=args.rate,
                             meta={"session": args.session, "readout": decoder.readout, "run": args.run})
        truth = SampleInlet(args.truth, say=_say) if args.truth else None
        recording = None
        if args.record or args.figure:
            recording = Recording(columns=columns, attrs={"run": str(args.run), "session": args.session,
                                                          "rate": args.rate, "input": args.input})
        _say(f"serve: decoding '{args.input}' ({source.kind}, {len(decoder.unit_ids)} units) into '{output}' "
             f"at {args.rate:g} Hz; Ctrl-C to stop")
        loop = ServeLoop(decoder=decoder, source=source, sink=sink, rate=args.rate, clock=lsl.local_clock,
                         recording=recording, truth=truth, say=_say, status_every=args.status_every)
        state["loop"] = loop
        if state["stop"]:
            loop.stop()
        stats = loop.run(duration=args.duration)

    print(stats.format_table())
    dropped = decoder.dropped
    print(f"spikes received {decoder.received}, dropped " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in dropped.items()))
    if recording is not None:
        if args.record:
            recording.save(args.record)
            print(f"recording: {args.record}")
        if truth is not None:
            (r2, n), (held, n_held) = recording.score(), recording.score(held=True)
            print(f"R^2 of the decoded stream against '{args.truth}': {r2:.4f} over {n} evaluated samples "
                  f"(ticks interpolated at each sample, as evaluate --causal compares); {held:.4f} over {n_held} "
                  f"as task software holds it (the newest sample pushed before each)")
        if args.figure:
            recording.figure(args.figure)
            print(f"figure: {args.figure}")
    return 0

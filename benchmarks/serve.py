"""Latency of `popdecode serve`'s loop on live LSL spike streams, and what the service adds.

    python benchmarks/serve.py                          # both models, 100/300/1000 units, 120 s each
    python benchmarks/serve.py --seconds 20 --units 300 --models poyo-1.3M   # one quick row

For each model (the README's small model and poyo-1.3M, random weights: timing does not depend
on training) and each unit count, a rig process sends Poisson spikes (20 Hz per unit, in 2 ms
packets, as spike events on LSL), and this process serves them exactly as `popdecode serve`
does (LSL inlet -> OnlineDecoder -> ServeLoop -> LSL outlet) at 50 Hz. Per tick it records when
the tick's spikes arrived (the inlet handed them over), how long decode_window took, and when
the decoded sample was pushed. Printed per row:

* latency arrival -> push: p50, p99, max (ms), over every tick after a 3 s warm-up;
* decode_window alone: p50, p99 of the model call inside the same ticks;
* service: the p50 and p99 of (latency - decode_window) per tick: what the loop, the buffer,
  the tokens and LSL add to the model;
* ticks and missed ticks; CPU share: this process's CPU time over wall time (100 % = one core).

Goals (issue 19): poyo-1.3M p99 <= 10 ms with 300 units and no missed tick; the service adds
<= 0.5 ms p99. All LSL traffic stays on this machine (popdecode's loopback configuration).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from popdecode.train.recipe import SMALL_DATA  # noqa: E402  (the small-data recipe's model)

SMALL = SMALL_DATA.model_overrides


def rig(name: str, units: int, rate: float, seconds: float) -> None:
    """The rig process: Poisson spikes of ``units`` at ``rate`` Hz each, every 2 ms."""
    import numpy as np

    from popdecode.serve.lsl import SPIKES, pylsl, stream_info

    lsl = pylsl()
    info = stream_info(name=name, kind=SPIKES, labels=["unit"], rate=lsl.IRREGULAR_RATE, source_id=f"bench:{name}",
                       fmt="int32", units=[f"n{i}" for i in range(units)])
    out = lsl.StreamOutlet(info)
    rng = np.random.default_rng(0)
    last = lsl.local_clock()
    end = last + seconds
    while last < end:
        time.sleep(0.002)
        now = lsl.local_clock()
        n = rng.poisson(rate * units * (now - last))
        if n:
            out.push_chunk(rng.integers(0, units, (n, 1)).astype(np.int32),
                           timestamp=np.sort(rng.uniform(last, now, n)).tolist())
        last = now


def model_for(name: str, units: int):
    import torch

    from popdecode.model import POYO
    from popdecode.model.config import PRESETS

    config = dataclasses.replace(PRESETS["poyo-1.3M"], **SMALL) if name == "small" else PRESETS[name]
    torch.manual_seed(0)
    model = POYO(config=config, readouts={"hand_vel": 2})
    model.unit_vocab.add([f"bench/n{i}" for i in range(units)])
    model.session_vocab.add(["bench"])
    return model.eval()


def serve_row(model_name: str, units: int, *, seconds: float, rate: float, threads: int, compile: bool,
              warmup: float = 3.0) -> dict:
    import numpy as np
    import torch

    from popdecode.serve.loop import ServeLoop
    from popdecode.serve.lsl import DecodedOutlet, SpikeInlet, pylsl
    from popdecode.serve.online_decoder import OnlineDecoder
    from popdecode.serve.recording import Recording

    lsl = pylsl()
    torch.set_num_threads(threads)
    model = model_for(model_name, units)
    if compile:
        # One process serves one model; this one serves several in turn: start each row from an
        # empty compile cache, or TorchInductor's recompile limit sends later rows to eager.
        torch._dynamo.reset()
        model.compile_for_inference()
    decoder = OnlineDecoder(model, "bench")
    decoder.warm_up()
    name = f"bench-{model_name}-{units}"
    proc = subprocess.Popen([sys.executable, __file__, "--rig", name, "--rig-units", str(units),
                             "--seconds", str(seconds + warmup + 10)])
    try:
        source = SpikeInlet(name, decoder.unit_ids, info=None)
        sink = DecodedOutlet(name=f"{name}-decoded", columns=["x", "y"], rate=rate, meta={})
        rec = Recording(columns=["x", "y"])
        loop = ServeLoop(decoder=decoder, source=source, sink=sink, rate=rate, clock=lsl.local_clock,
                         recording=rec, say=lambda line: None)
        loop.run(duration=warmup)  # fills the window, settles caches
        missed0 = loop.stats.missed
        rec = loop.recording = Recording(columns=["x", "y"])
        c0, w0 = time.process_time(), time.perf_counter()
        loop.run(duration=seconds)
        cpu = (time.process_time() - c0) / (time.perf_counter() - w0)
    finally:
        proc.kill()
        proc.wait()
    ticks = rec.ticks
    has = np.isfinite(ticks["arrival"])
    latency = (ticks["pushed"] - ticks["arrival"])[has]
    service = latency - ticks["model_s"][has]
    pct = lambda x, q: float(np.percentile(x, q)) * 1e3  # noqa: E731
    return {"model": model_name, "units": units, "tokens": float(ticks["tokens"].mean()), "ticks": len(ticks["time"]),
            "missed": loop.stats.missed - missed0, "lat50": pct(latency, 50), "lat99": pct(latency, 99),
            "latmax": float(latency.max()) * 1e3, "dw50": pct(ticks["model_s"], 50), "dw99": pct(ticks["model_s"], 99),
            "svc50": pct(service, 50), "svc99": pct(service, 99), "cpu": cpu * 100}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["small", "poyo-1.3M"], help="small and/or preset names")
    p.add_argument("--units", nargs="+", type=int, default=[100, 300, 1000])
    p.add_argument("--seconds", type=float, default=120.0, help="measured seconds per row (default 120)")
    p.add_argument("--rate", type=float, default=50.0, help="ticks per second (default 50)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the serving process (default 2)")
    p.add_argument("--eager", action="store_true", help="do not compile decode_window (compiled by default)")
    p.add_argument("--rig", default=None, help=argparse.SUPPRESS)
    p.add_argument("--rig-units", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    from popdecode.serve.lsl import use_loopback_config

    use_loopback_config()
    if args.rig:
        rig(args.rig, args.rig_units, 20.0, args.seconds)
        return 0
    import torch

    from popdecode.utils.progress import progress

    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs, {args.threads} thread(s), {'eager' if args.eager else 'compiled'}, "
          f"{args.rate:g} Hz, {args.seconds:g} s per row, 20 spikes/s per unit")
    rows = []
    for model_name in progress(args.models, desc="models"):
        for units in args.units:
            rows.append(serve_row(model_name, units, seconds=args.seconds, rate=args.rate, threads=args.threads,
                                  compile=not args.eager))
    head = (f"{'model':<10}{'units':>6}{'spikes/win':>11}{'ticks':>7}{'missed':>7}{'lat p50':>9}{'p99':>7}{'max':>7}"
            f"{'dw p50':>8}{'dw p99':>8}{'svc p50':>8}{'svc p99':>8}{'CPU %':>7}")
    print(head)
    for r in rows:
        print(f"{r['model']:<10}{r['units']:>6}{r['tokens']:>11.0f}{r['ticks']:>7}{r['missed']:>7}{r['lat50']:>9.2f}"
              f"{r['lat99']:>7.2f}{r['latmax']:>7.2f}{r['dw50']:>8.2f}{r['dw99']:>8.2f}{r['svc50']:>8.2f}{r['svc99']:>8.2f}"
              f"{r['cpu']:>7.0f}")
    print("times in ms; lat = arrival of a tick's spikes -> push of its sample; dw = decode_window alone; "
          "svc = (lat - dw) per tick, p50 and p99; CPU % of one core")
    return 0


if __name__ == "__main__":
    sys.exit(main())

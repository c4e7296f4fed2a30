"""Where the service's share of `popdecode serve`'s latency goes, step by step.

    python benchmarks/serve_breakdown.py                   # small model, 300 units, 20 s live + 3,000 ticks offline
    python benchmarks/serve_breakdown.py --units 1000 --seconds 60

Two measurements, one process:

1. **live**: one row of `benchmarks/serve.py` (a rig process sending Poisson spikes over
   loopback LSL, served at 50 Hz, compiled), with the loop's feed and decode steps wrapped to
   stamp the clock. Printed: the service (latency - decode_window) and its two halves, the
   arrival stamp -> spikes in the buffer (unit map + ``OnlineDecoder.push``) and the work of a
   tick outside ``decode_window`` (tokens, tensors, output, the LSL push).
2. **offline**: the same ``OnlineDecoder`` driven without the LSL inlet, 20 ms chunks of
   spikes, timing ``push``, ``tokens`` and the outlet's push; once with the model call replaced
   by a stub (warm caches) and once with the real compiled model between ticks (what its
   working set leaves in the caches, as in a live loop).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serve as serve_bench  # noqa: E402  (the rig, the models and one live row)


def live(units: int, seconds: float) -> dict:
    from popdecode.serve.loop import ServeLoop

    marks = []
    feed, decode_and_push = ServeLoop._feed, ServeLoop._decode_and_push

    def stamped_feed(self):
        arrival = feed(self)
        self._fed_at = self.clock()
        return arrival

    def stamped_decode_and_push(self, tick, arrival):
        began = self.clock()
        decode_and_push(self, tick, arrival)
        if arrival is not None:
            marks.append((arrival, self._fed_at, began, self.decoder.last_model_s, self.clock()))

    ServeLoop._feed, ServeLoop._decode_and_push = stamped_feed, stamped_decode_and_push
    try:
        row = serve_bench.serve_row("small", units, seconds=seconds, rate=50.0, threads=1, compile=True)
    finally:
        ServeLoop._feed, ServeLoop._decode_and_push = feed, decode_and_push
    arrival, fed, began, model_s, ended = np.array(marks[len(marks) // 10:]).T  # past the warm-up
    return {"service": (row["svc50"], row["svc99"]), "feed": pct(fed - arrival),
            "outside model": pct(ended - began - model_s)}


def offline(units: int, ticks: int, real_model: bool) -> dict:
    import torch

    from popdecode.serve.lsl import DecodedOutlet
    from popdecode.serve.online_decoder import OnlineDecoder

    torch.set_num_threads(1)
    model = serve_bench.model_for("small", units)
    decoder = OnlineDecoder(model, "bench")
    if real_model:
        model.compile_for_inference()
        decoder.warm_up()
    else:
        model.decode_window = lambda **kw: torch.zeros(1, 2)
    sink = DecodedOutlet(name="breakdown-decoded", columns=["x", "y"], rate=50, meta={})
    rng = np.random.default_rng(0)
    spent = {"push": [], "tokens": [], "decode": [], "LSL push": []}
    t = 0.0
    for i in range(ticks):
        n = rng.poisson(20 * units * 0.02)
        times, which = np.sort(rng.uniform(t, t + 0.02, n)), rng.integers(0, units, n)
        t += 0.02
        a = time.perf_counter()
        decoder.push(times, which)
        b = time.perf_counter()
        decoder.tokens(t)
        c = time.perf_counter()
        y = decoder.decode(t)  # tokens again, the model, the output
        d = time.perf_counter()
        sink.push(y, t)
        e = time.perf_counter()
        if i >= ticks // 10:
            for key, s in zip(spent, (b - a, c - b, d - c, e - d)):
                spent[key].append(s)
    return {k: pct(np.array(v)) for k, v in spent.items()}


def pct(seconds: np.ndarray) -> tuple[float, float]:
    return float(np.percentile(seconds, 50)) * 1e3, float(np.percentile(seconds, 99)) * 1e3


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--units", type=int, default=300, help="units at 20 spikes/s each (default 300)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds of the live row (default 20)")
    p.add_argument("--ticks", type=int, default=3000, help="ticks of each offline run (default 3000)")
    args = p.parse_args(argv)

    from popdecode.serve.lsl import use_loopback_config

    use_loopback_config()
    print(f"# small model, {args.units} units, 1 thread; times in ms, p50 / p99")
    for name, parts in [("live", live(args.units, args.seconds)),
                        ("offline, model stubbed", offline(args.units, args.ticks, real_model=False)),
                        ("offline, real model", offline(args.units, args.ticks, real_model=True))]:
        print(f"{name}: " + "  ".join(f"{k} {a:.3f} / {b:.3f}" for k, (a, b) in parts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

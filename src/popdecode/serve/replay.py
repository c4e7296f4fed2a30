"""Stream a recorded session over Lab Streaming Layer in real time, as a rig would.

Two streams: the session's spikes (SESSION-spikes: spike events, or binned counts with
--kind binned) and its recorded behaviour (SESSION-behavior: one channel per dimension and a
last channel, eval, that is 1 where `popdecode evaluate` scores the sample). Point
`popdecode serve` at the first and record the second beside what it decodes (--truth), and
you have a closed loop without a rig.

What is streamed: the intervals of --split (test by default), each with --lead-in seconds of
the recording before it (so that the first sample already has a full causal window), merged
where they overlap and played back to back with a --gap between them. Inside a segment every
spike keeps its place relative to the others, so a live decoder sees the very windows
`popdecode evaluate --causal` sees. Each sample is stamped with the LSL time at which it is
sent; --speed 2 plays twice as fast (a 1 s decoding window then holds 2 s of recording: for
load tests, not for accuracy).

examples:
  popdecode replay data/store --session monkey_day3 --split test
  popdecode replay data/store --session monkey_day3 --kind binned --bin 0.02 --loopback
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", metavar="STORE", help="store directory (popdecode prepare / simulate)")
    p.add_argument("--session", required=True, help="session id in the store")
    p.add_argument("--split", choices=("test", "valid", "train", "all"), default="test", help="what to stream (default test)")
    p.add_argument("--readout", default=None, help="behaviour series to stream (default: the session's first target)")
    p.add_argument("--speed", type=float, default=1.0, help="playback speed (default 1: real time)")
    p.add_argument("--kind", choices=("events", "binned"), default="events", help="spike events (default) or binned counts")
    p.add_argument("--bin", type=float, default=0.02, metavar="S", help="bin width for --kind binned (default 0.02 s)")
    p.add_argument("--name", default=None, metavar="PREFIX", help="stream names PREFIX-spikes, PREFIX-behavior (default: the session id)")
    p.add_argument("--lead-in", type=float, default=1.5, metavar="S", help="seconds streamed before each interval (default 1.5)")
    p.add_argument("--gap", type=float, default=0.5, metavar="S", help="seconds of silence between streamed segments (default 0.5)")
    p.add_argument("--wait", type=float, default=60.0, metavar="S",
                   help="wait up to S seconds for a consumer of each stream before starting (default 60; 0: start at once)")
    p.add_argument("--loopback", action="store_true", help="keep all LSL traffic on this machine")


@dataclass
class ReplayPlan:
    """What to send, on the stream's own timeline (seconds from the start of the replay)."""

    spike_times: np.ndarray  # float64 [n], sorted
    spike_units: np.ndarray  # int64 [n], index into the session's units
    sample_times: np.ndarray  # float64 [m], sorted
    sample_values: np.ndarray  # float32 [m, D + 1]; the last column is the eval flag
    columns: list[str]
    duration: float
    segments: list[tuple[float, float, float]]  # (session start, session end, stream start)


def plan_replay(session, *, split: str, readout: str, lead_in: float, gap: float) -> ReplayPlan:
    """The segments of ``session`` to stream and everything in them, laid end to end."""
    from popdecode.data.intervals import Intervals

    domain = session.domain
    scored = domain if split == "all" else session.split(split)
    if len(scored) == 0:
        raise ValueError(f"session '{session.id}' has no '{split}' intervals")
    starts = np.asarray([s for s, _ in scored], dtype=np.float64)
    ends = np.asarray([e for _, e in scored], dtype=np.float64)
    segments = Intervals.from_pairs(starts - lead_in, ends)  # from_pairs merges what overlaps
    series = session.series[readout]
    ts = np.asarray(series.timestamps, dtype=np.float64)
    values = np.asarray(series.values, dtype=np.float32)
    eval_set = session.intervals.get("eval")
    flag = scored.contains(ts) & np.isfinite(values).all(axis=1)
    if eval_set is not None:
        flag &= eval_set.contains(ts)

    spike_t, spike_u, sample_t, sample_v, placed = [], [], [], [], []
    clock = 0.0
    for s, e in segments:
        win = session.window(s, e, series=[readout])
        spike_t.append(win.spike_times + clock)
        spike_u.append(np.asarray(win.spike_units, dtype=np.int64))
        i0, i1 = np.searchsorted(ts, [s, e], side="left")
        sample_t.append(ts[i0:i1] - s + clock)
        sample_v.append(np.concatenate([values[i0:i1], flag[i0:i1, None].astype(np.float32)], axis=1))
        placed.append((float(s), float(e), clock))
        clock += (e - s) + gap
    return ReplayPlan(
        spike_times=np.concatenate(spike_t), spike_units=np.concatenate(spike_u),
        sample_times=np.concatenate(sample_t), sample_values=np.concatenate(sample_v),
        columns=[*map(str, series.columns), "eval"], duration=clock - gap, segments=placed,
    )


def bin_plan(plan: ReplayPlan, *, units: int, width: float) -> tuple[np.ndarray, np.ndarray]:
    """(bin end times [b], counts [b, units]) of the plan's spikes in bins of ``width`` seconds
    laid from the start of each segment."""
    ends, counts = [], []
    for i, (s, e, start) in enumerate(plan.segments):
        n_bins = max(int(np.ceil((e - s) / width - 1e-9)), 1)
        i0, i1 = np.searchsorted(plan.spike_times, [start, start + (e - s)], side="left")
        b = np.minimum(((plan.spike_times[i0:i1] - start) / width).astype(np.int64), n_bins - 1)
        c = np.zeros((n_bins, units), dtype=np.float32)
        np.add.at(c, (b, plan.spike_units[i0:i1]), 1)
        ends.append(start + width * np.arange(1, n_bins + 1))
        counts.append(c)
    return np.concatenate(ends), np.concatenate(counts)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from popdecode.data.store import open_sessions
    from popdecode.errors import UserError
    from popdecode.serve.lsl import BEHAVIOR, COUNTS, SPIKES, pylsl, stream_info, use_loopback_config
    from popdecode.serve.signals import stop_on_signals
    from popdecode.utils.progress import progress

    if args.loopback:
        use_loopback_config()
    if not args.speed > 0:
        raise UserError(f"--speed must be positive (got {args.speed})")
    if args.kind == "binned" and not args.bin > 0:
        raise UserError(f"--bin must be positive seconds (got {args.bin})")
    if args.lead_in < 0 or args.gap < 0:
        raise UserError("--lead-in and --gap must be 0 or more seconds")
    sessions = {s.id: s for s in open_sessions([args.store])}
    if args.session not in sessions:
        raise UserError(f"session '{args.session}' is not in {args.store}; sessions there: {', '.join(sorted(sessions)[:8])}")
    session = sessions[args.session]
    readout = args.readout or (session.targets[0] if session.targets else None)
    if readout not in session.series:
        raise UserError(f"session '{args.session}' has no series '{readout}'; series there: {', '.join(session.series)}")
    try:
        plan = plan_replay(session, split=args.split, readout=readout, lead_in=args.lead_in, gap=args.gap)
    except ValueError as err:
        raise UserError(f"{err}; choose another --split") from None

    lsl = pylsl()
    prefix = args.name or args.session
    units = [str(u) for u in session.unit_ids]
    if args.kind == "events":
        spike_info = stream_info(name=f"{prefix}-spikes", kind=SPIKES, labels=["unit"], rate=lsl.IRREGULAR_RATE,
                                 source_id=f"popdecode-replay:{prefix}:spikes", fmt="int32", units=units,
                                 meta={"session": args.session})
        send_t = plan.spike_times
        send_x = plan.spike_units.astype(np.int32)[:, None]
    else:
        spike_info = stream_info(name=f"{prefix}-spikes", kind=COUNTS, labels=units, rate=1.0 / args.bin,
                                 source_id=f"popdecode-replay:{prefix}:counts", meta={"session": args.session})
        send_t, send_x = bin_plan(plan, units=len(units), width=args.bin)
    rate = 1.0 / np.median(np.diff(plan.sample_times)) if len(plan.sample_times) > 1 else lsl.IRREGULAR_RATE
    behavior_info = stream_info(name=f"{prefix}-behavior", kind=BEHAVIOR, labels=plan.columns, rate=float(rate),
                                source_id=f"popdecode-replay:{prefix}:behavior", meta={"session": args.session, "readout": readout})
    spikes_out, behavior_out = lsl.StreamOutlet(spike_info), lsl.StreamOutlet(behavior_info)
    stopped = []
    with stop_on_signals(lambda: stopped.append(True), _say):
        if args.wait > 0:
            _say(f"replay: waiting up to {args.wait:g} s for consumers of '{prefix}-spikes' and '{prefix}-behavior' ...")
            deadline = time.monotonic() + args.wait
            while not stopped and time.monotonic() < deadline:
                if spikes_out.have_consumers() and behavior_out.have_consumers():
                    break
                time.sleep(0.05)
        _say(f"replay: {args.session} {args.split}: {len(plan.spike_times)} spikes, {len(plan.sample_times)} behaviour "
             f"samples, {plan.duration:.1f} s in {len(plan.segments)} segment(s), {args.kind}, speed {args.speed:g}")
        start = lsl.local_clock() + 0.2
        i = j = 0
        bar = progress(total=round(plan.duration, 1), desc="replay", unit="s", bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s")
        while not stopped and (i < len(send_t) or j < len(plan.sample_times)):
            now = (lsl.local_clock() - start) * args.speed  # stream seconds due
            k = int(np.searchsorted(send_t, now, side="right"))
            if k > i:
                spikes_out.push_chunk(send_x[i:k], timestamp=(start + send_t[i:k] / args.speed).tolist())
                i = k
            k = int(np.searchsorted(plan.sample_times, now, side="right"))
            if k > j:
                behavior_out.push_chunk(plan.sample_values[j:k], timestamp=(start + plan.sample_times[j:k] / args.speed).tolist())
                j = k
            shown = round(min(max(now, 0.0), plan.duration), 1)
            if shown - bar.n >= 0.5:
                bar.update(shown - bar.n)
            time.sleep(0.0005)  # spikes go out within ~0.5 ms of their time
        bar.close()
        time.sleep(1.0)  # let consumers take the last samples before the outlets go
    _say(f"replay: {'stopped' if stopped else 'done'}: sent {i} spike samples and {j} behaviour samples")
    return 0

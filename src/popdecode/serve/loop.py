"""The serving loop: at a fixed rate, take what arrived, decode now, push the sample.

One tick, read top-down in :meth:`ServeLoop.run`:

1. sleep until the tick's scheduled time t (ticks are k / rate after the start, on the
   source's clock, so they never drift);
2. **feed**: take every spike the source has received since the last tick into the
   :class:`~popdecode.serve.online_decoder.OnlineDecoder` (any order; it sorts and counts);
3. **decode** the readout at t from [t - window, t) and **push** it, stamped t (with the
   decoder's ``delay`` d: the readout at t - d, stamped t - d);
4. note the latency (arrival of the newest spike of this tick -> push) and keep the truth
   stream's samples when one is recorded;
5. schedule the next tick. If the decode took longer than a tick, the ticks already past are
   *skipped and counted*, never queued: the next decode is again about "now", so latency does
   not drift however slow one decode was.

The loop knows no transport. A source has ``poll() -> (times, units, arrival)`` (raising
:class:`SourceLost` when its stream is gone) and ``reconnect() -> bool`` (non-blocking); a sink
has ``push(values, timestamp)``. :mod:`popdecode.serve.lsl` provides them for Lab Streaming
Layer; another bus (ZeroMQ, Redis streams) needs the same two small classes.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Callable, Protocol

import numpy as np

from popdecode.serve.online_decoder import OnlineDecoder
from popdecode.serve.recording import Recording
from popdecode.serve.stats import ServeStats


class SourceLost(Exception):
    """The input stream is gone (its sender stopped, or the connection broke)."""


class SpikeSource(Protocol):
    def poll(self) -> tuple[np.ndarray, np.ndarray, float]: ...  # times, decoder unit indices, arrival

    def reconnect(self) -> bool: ...


class Sink(Protocol):
    def push(self, values: np.ndarray, timestamp: float) -> None: ...


class TruthSource(Protocol):
    def poll(self) -> tuple[np.ndarray, np.ndarray]: ...  # timestamps [n], values [n, D + 1] (last: eval flag)


class ServeLoop:
    """Decode ``source`` into ``sink`` at ``rate`` Hz until :meth:`stop` or ``duration``.

    Args (keyword-only):
        decoder: the :class:`OnlineDecoder`.
        source, sink: see the module docstring.
        rate: ticks per second.
        clock: seconds on the source's time base (``pylsl.local_clock`` for LSL).
        recording: when given, every tick (and the truth samples) is kept for ``--record``.
        truth: a source of the true behaviour to record beside the decoded samples.
        say: where state lines go (default: stderr); ``status_every`` seconds apart.
    """

    def __init__(self, *, decoder: OnlineDecoder, source: SpikeSource, sink: Sink, rate: float,
                 clock: Callable[[], float] = time.monotonic, recording: Recording | None = None,
                 truth: TruthSource | None = None, say: Callable[[str], None] | None = None,
                 status_every: float = 5.0):
        if not rate > 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.decoder, self.source, self.sink = decoder, source, sink
        self.period = 1.0 / float(rate)
        self.clock = clock
        self.recording, self.truth = recording, truth
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self.status_every = float(status_every)
        self.stats = ServeStats()
        self._stopping = False

    def stop(self) -> None:
        """Ask the loop to finish after the tick in flight (safe from a signal handler)."""
        self._stopping = True

    def run(self, *, duration: float | None = None) -> ServeStats:
        start = self.clock()
        end = math.inf if duration is None else start + duration
        next_tick, next_status = start + self.period, start + self.status_every
        connected = True
        while not self._stopping:
            wait = next_tick - self.clock()
            if wait > 0:
                time.sleep(wait)
            if self._stopping or next_tick > end:
                break
            tick = next_tick
            if connected:
                try:
                    arrival = self._feed()
                except SourceLost as err:
                    connected = False
                    self.say(f"serve: input lost ({err}); waiting for it to come back")
            if not connected and self.source.reconnect():
                connected = True
                self.say("serve: input is back; decoding again")
                arrival = self._feed()
            if connected:
                self._decode_and_push(tick, arrival)
            else:
                self.stats.waiting += 1
            if self.truth is not None and self.recording is not None:
                self.recording.add_truth(*self.truth.poll())
            if tick >= next_status:
                self.say(self.status_line(tick - start, connected))
                next_status += self.status_every
            next_tick = self._schedule(next_tick + self.period)
        return self.stats

    def _feed(self) -> float | None:
        """Move what the source received into the decoder; the arrival time of this tick's
        spikes (None if none came)."""
        times, units, arrival = self.source.poll()
        if len(times) == 0:
            return None
        self.decoder.push(times, units)
        return arrival

    def _decode_and_push(self, tick: float, arrival: float | None) -> None:
        began = self.clock()
        values = self.decoder.decode(tick)
        decoded = self.clock()
        stamp = tick - self.decoder.delay  # the time the sample describes
        self.sink.push(values, stamp)
        pushed = self.clock()
        s = self.stats
        s.ticks += 1
        s.decode.add(decoded - began)
        s.model.add(self.decoder.last_model_s)
        if arrival is not None:
            s.latency.add(pushed - arrival)
        if self.recording is not None:
            self.recording.add_tick(stamp, values, pushed=pushed, arrival=arrival,
                                    model_s=self.decoder.last_model_s, tokens=self.decoder.last_tokens)

    def _schedule(self, next_tick: float) -> float:
        """The next tick still ahead: ticks already past are skipped and counted."""
        late = self.clock() - next_tick
        if late >= 0:
            skipped = int(late // self.period) + 1
            self.stats.missed += skipped
            next_tick += skipped * self.period
        return next_tick

    def status_line(self, elapsed: float, connected: bool) -> str:
        s, d = self.stats, self.decoder.dropped
        dropped = sum(d.values())
        detail = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in d.items() if v)
        return (f"serve: {elapsed:7.1f} s  ticks {s.ticks}  missed {s.missed}  "
                f"decode p50 {s.decode.percentile(50) * 1e3:.2f} ms p99 {s.decode.percentile(99) * 1e3:.2f} ms  "
                f"spikes {self.decoder.received}  dropped {dropped}{f' ({detail})' if detail else ''}  "
                f"input {'ok' if connected else 'WAITING'}")

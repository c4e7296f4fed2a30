"""ServeLoop with an in-process source and sink: late ticks skipped, lost input waited for, stop."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from popdecode.serve.loop import ServeLoop, SourceLost
from popdecode.serve.online_decoder import OnlineDecoder
from popdecode.serve.recording import Recording
from popdecode.train import setup
from serve.serve_helpers import model_and_session


class ClockedSource:
    """Delivers the session's spikes when the clock reaches them (session time = clock - t0);
    raises SourceLost while the clock is inside ``lost`` (a pair of session times)."""

    def __init__(self, session, t0, lost=None):
        self.times, self.units, self.t0, self.lost = session.spike_times + t0, session.spike_units, t0, lost
        self.i = 0
        self.reconnects = 0

    def _is_lost(self):
        return self.lost is not None and self.lost[0] <= time.monotonic() - self.t0 < self.lost[1]

    def poll(self):
        if self._is_lost():
            raise SourceLost("sender gone")
        now = time.monotonic()
        k = int(np.searchsorted(self.times, now, side="right"))
        out = self.times[self.i:k], self.units[self.i:k]
        self.i = k
        return (*out, now)

    def reconnect(self):
        self.reconnects += 1
        return not self._is_lost()


class ListSink:
    def __init__(self):
        self.pushed = []

    def push(self, values, timestamp):
        self.pushed.append((timestamp, np.array(values)))


class SlowDecoder(OnlineDecoder):
    """Every 10th decode takes 3.5 ticks."""

    def __init__(self, *a, pause, **kw):
        super().__init__(*a, **kw)
        self.pause, self.calls = pause, 0

    def decode(self, t):
        self.calls += 1
        if self.calls % 10 == 0:
            time.sleep(self.pause)
        return super().decode(t)


@pytest.fixture(scope="module")
def parts():
    torch.set_num_threads(1)
    return model_and_session()


def make(parts, cls=OnlineDecoder, **kw):
    model, meta, session = parts
    dec = cls(model, session.id, normalization=setup.normalization_from_meta(meta), **kw)
    dec.warm_up()  # as popdecode serve does: the first decode folds the weights (~0.3 s)
    return dec


def test_a_slow_decode_skips_ticks_and_latency_does_not_drift(parts):
    rate = 50.0
    dec = make(parts, SlowDecoder, pause=3.5 / rate)
    t0 = time.monotonic() + 0.01 - 2.0  # start 2 s into the session, so windows are full
    lines = []
    loop = ServeLoop(decoder=dec, source=ClockedSource(parts[2], t0), sink=ListSink(), rate=rate, say=lines.append)
    stats = loop.run(duration=3.0)
    # about 3 s * 50 Hz ticks were due; each slow decode costs 3 of them, never queued
    assert stats.ticks + stats.missed == pytest.approx(150, abs=4)
    assert stats.missed >= 3 * (stats.ticks // 10) - 2
    lat = stats.latency.values()
    assert stats.latency.max < 5.0 / rate  # a slow decode delays one sample, not the ones after it
    assert np.median(lat[-20:]) < np.median(lat[:20]) + 0.005  # no drift
    ticks = np.array([t for t, _ in loop.sink.pushed])
    assert np.all(np.diff(ticks) > 0) and np.allclose(np.diff(ticks) * rate, np.round(np.diff(ticks) * rate))


def test_lost_input_is_waited_for_and_decoding_resumes(parts):
    dec = make(parts)
    t0 = time.monotonic() - 2.0
    source = ClockedSource(parts[2], t0, lost=(2.6, 3.4))
    lines, rec = [], Recording(columns=["x", "y"])
    loop = ServeLoop(decoder=dec, source=source, sink=ListSink(), rate=50, say=lines.append, recording=rec,
                     status_every=0.5)
    stats = loop.run(duration=2.0)
    assert any("input lost (sender gone)" in line for line in lines)
    assert any("input is back" in line for line in lines)
    assert any("input WAITING" in line for line in lines)
    assert 30 <= stats.waiting <= 45  # ~0.8 s at 50 Hz
    pushed = np.array([t for t, _ in loop.sink.pushed]) - t0
    assert pushed.min() < 2.6 and pushed.max() > 3.4  # decoded before and after the gap
    assert not np.any((pushed > 2.62) & (pushed < 3.38))  # nothing pushed while waiting
    assert len(rec.ticks["time"]) == stats.ticks


def test_stop_from_another_thread_ends_after_the_tick(parts):
    dec = make(parts)
    loop = ServeLoop(decoder=dec, source=ClockedSource(parts[2], time.monotonic() - 2.0), sink=ListSink(), rate=50,
                     say=lambda line: None)
    threading.Timer(0.3, loop.stop).start()
    began = time.monotonic()
    stats = loop.run()  # no duration: only stop() ends it
    assert time.monotonic() - began < 1.0 and stats.ticks >= 5


def test_a_delay_stamps_each_sample_with_the_time_it_describes(parts):
    rate, delay = 50.0, 0.1
    dec = make(parts, delay=delay)
    t0 = time.monotonic() - 2.0
    rec = Recording(columns=["x", "y"])
    loop = ServeLoop(decoder=dec, source=ClockedSource(parts[2], t0), sink=ListSink(), rate=rate,
                     say=lambda line: None, recording=rec)
    loop.run(duration=0.5)
    stamps = np.array([t for t, _ in loop.sink.pushed])
    np.testing.assert_array_equal(rec.ticks["time"], stamps)
    # pushed on the tick grid, each stamped `delay` before its tick: the tick grid shifted
    assert np.all(rec.ticks["pushed"] - stamps >= delay)
    # and the value is the readout at the stamp, from the window ending at the tick
    other = make(parts, delay=delay)
    other.push(parts[2].spike_times + t0, parts[2].spike_units)
    np.testing.assert_allclose(other.decode(stamps[-1] + delay), loop.sink.pushed[-1][1], rtol=1e-5, atol=1e-5)

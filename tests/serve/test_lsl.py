"""popdecode serve and replay over real LSL streams on this machine (loopback only).

Each test runs the commands as separate processes, as a lab would, and plays the rig or the
task software itself from the test process.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from popdecode.cli import main
from popdecode.data.store import write_session
from popdecode.errors import UserError
from popdecode.serve.lsl import SPIKES, pylsl, session_units, stream_info, unit_lookup
from popdecode.serve.recording import Recording
from popdecode.train.config import TrainConfig
from popdecode.train.trainer import train_from_scratch
from train.easy_data import TINY_MODEL, easy_sessions

lsl = pylsl()


def popdecode(*args, **kw) -> subprocess.Popen:
    env = {**os.environ, "POPDECODE_PROGRESS": "0"}
    return subprocess.Popen([sys.executable, "-m", "popdecode", *map(str, args)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A store of two 45 s easy sessions and a tiny model trained on them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("serve")
    for s in easy_sessions(2, seconds=45.0):
        write_session(root / "store", s)
    cfg = TrainConfig(data=[str(root / "store")], epochs=8, batch_size=8, lr=3e-3, model_overrides=dict(TINY_MODEL))
    train_from_scratch(cfg, root / "run")
    torch.set_num_threads(threads)
    return root


class Rig:
    """A spike-event outlet fed with Poisson spikes of ``units`` (20 Hz each) from a thread."""

    def __init__(self, name, units, source_id="test-rig"):
        info = stream_info(name=name, kind=SPIKES, labels=["unit"], rate=lsl.IRREGULAR_RATE, source_id=source_id,
                           fmt="int32", units=units)
        self.outlet = lsl.StreamOutlet(info)
        self.units, self.running = len(units), True
        self.thread = threading.Thread(target=self._feed, daemon=True)
        self.thread.start()

    def _feed(self):
        rng, last = np.random.default_rng(0), lsl.local_clock()
        while self.running:
            time.sleep(0.005)
            now = lsl.local_clock()
            n = rng.poisson(20.0 * self.units * (now - last))
            if n:
                stamps = np.sort(rng.uniform(last, now, n))
                self.outlet.push_chunk(rng.integers(0, self.units, (n, 1)).astype(np.int32), timestamp=stamps.tolist())
            last = now

    def close(self):
        self.running = False
        self.thread.join()
        del self.outlet


def wait_for(proc, text, timeout=30.0):
    """Read proc's stderr lines until one contains ``text``; returns every line read."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"never saw {text!r}; stderr so far:\n{''.join(lines)}")


def peers_of(pid: int) -> list[str]:
    """Local and peer addresses of every inet socket of ``pid`` (ss -tunap)."""
    out = subprocess.run(["ss", "-tunapH"], capture_output=True, text=True).stdout
    addresses = []
    for line in out.splitlines():
        if f"pid={pid}," in line:
            fields = line.split()
            addresses += [fields[4], fields[5]]
    return addresses


def test_replay_through_serve_scores_like_causal_evaluation(run, tmp_path):
    assert main(["evaluate", str(run / "run"), "--data", str(run / "store"), "--causal", "--sessions", "easy-0"]) == 0
    with open(run / "run" / "results_test_causal.csv") as f:
        offline_r2, offline_n = [(float(r.split(",")[4]), int(r.split(",")[5])) for r in f.read().splitlines()[1:]][0]
    # Generous waits: on a loaded 2-core machine starting either process (torch, liblsl) takes seconds.
    replay = popdecode("replay", run / "store", "--session", "easy-0", "--wait", 60)
    serve = popdecode("serve", run / "run", "--session", "easy-0", "--input", "easy-0-spikes", "--truth",
                      "easy-0-behavior", "--record", tmp_path / "rec.h5", "--duration", 14, "--wait", 60)
    out, err = serve.communicate(timeout=60)
    assert replay.wait(timeout=90) == 0, replay.stderr.read()
    assert serve.returncode == 0, err
    rec = Recording.load(tmp_path / "rec.h5")
    r2, n = rec.score()
    assert n == offline_n  # the same samples
    # live windows match offline ones up to spikes a tick ahead of their delivery; this barely
    # trained model's R^2 moves by ~0.02 with that (BENCHMARKS.md has trained models at 0.005)
    assert r2 == pytest.approx(offline_r2, abs=0.05)
    assert "R^2 of the decoded stream" in out and "arrival -> push" in out


def test_a_stream_with_other_units_is_refused_with_one_line(run):
    rig = Rig("wrong-units", [f"u{i}" for i in range(11)] + ["zz"], source_id="wrong")
    try:
        serve = popdecode("serve", run / "run", "--session", "easy-0", "--input", "wrong-units", "--wait", 10)
        out, err = serve.communicate(timeout=60)
    finally:
        rig.close()
    assert serve.returncode == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("popdecode: error: stream 'wrong-units' does not carry the session's units")
    assert "missing 1 (u11), extra 1 (zz)" in last


def test_serve_survives_a_lost_input_and_consumers_coming_and_going(run, tmp_path):
    units = [f"u{i}" for i in range(12)]
    rig = Rig("rig-spikes", units)
    serve = popdecode("serve", run / "run", "--session", "easy-0", "--input", "rig-spikes", "--output", "decoded",
                      "--record", tmp_path / "rec.h5", "--status-every", 0.5, "--wait", 20)
    try:
        wait_for(serve, "into 'decoded'")
        got = []
        for _ in range(2):  # a consumer comes, reads, goes; another comes
            found = lsl.resolve_byprop("name", "decoded", timeout=10)
            inlet = lsl.StreamInlet(found[0])
            deadline = time.monotonic() + 10
            while len(got) < 20 and time.monotonic() < deadline:
                samples, ts = inlet.pull_chunk(timeout=0.2)
                got += ts
            inlet.close_stream()
            del inlet
            assert len(got) >= 20
            got = []
        # nothing leaves this machine: every address of serve's sockets is loopback or a wildcard listener
        for address in peers_of(serve.pid):
            host = address.rsplit(":", 1)[0].strip("[]")
            assert host in ("0.0.0.0", "*") or ipaddress.ip_address(host).is_loopback, address
        rig.close()  # the rig goes away...
        wait_for(serve, "input lost")
        wait_for(serve, "input WAITING")
        rig = Rig("rig-spikes", units)  # ...and comes back
        wait_for(serve, "input is back")
        for _ in range(2):  # two state lines (>= 0.5 s) of decoding, even on a loaded machine
            wait_for(serve, "input ok")
        serve.send_signal(signal.SIGTERM)
        out, err = serve.communicate(timeout=30)
    finally:
        rig.close()
        if serve.poll() is None:
            serve.kill()
    assert serve.returncode == 0, err
    assert "ticks" in out and "recording:" in out
    rec = Recording.load(tmp_path / "rec.h5")
    t = rec.ticks["time"]
    gaps = np.diff(t)
    assert gaps.max() > 0.3  # the wait...
    assert (t > t[np.argmax(gaps)]).sum() > 5  # ...and decoding after it


def test_ctrl_c_while_waiting_for_input_exits_cleanly(run, tmp_path):
    serve = popdecode("serve", run / "run", "--session", "easy-0", "--input", "nobody-sends-this",
                      "--record", tmp_path / "rec.h5")
    wait_for(serve, "looking for the input stream")
    time.sleep(0.5)
    serve.send_signal(signal.SIGINT)
    out, err = serve.communicate(timeout=30)
    assert serve.returncode == 0, err
    assert "SIGINT received" in err and "Traceback" not in err
    assert not (tmp_path / "rec.h5").exists()  # nothing decoded, nothing half-written


def test_stream_indices_map_to_session_units_and_undeclared_ones_to_minus_one():
    session = ["a", "b", "c", "d"]
    stream = ["c", "a", "d", "b"]  # the rig's order
    lookup = unit_lookup(stream, session, stream="rig")
    index = np.array([0, 1, 2, 3, -1, 4, -(2**31), 2**31 - 1, 3, 0], dtype=np.int32)
    expected = [session.index(stream[i]) if 0 <= i < len(stream) else -1 for i in index.tolist()]
    assert session_units(lookup, index).tolist() == expected
    assert session_units(lookup, index.astype(np.int64)).tolist() == expected
    with pytest.raises(UserError, match=r"missing 1 \(d\), extra 1 \(e\)"):
        unit_lookup(["a", "b", "c", "e"], session, stream="rig")

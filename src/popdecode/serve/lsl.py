"""Lab Streaming Layer for popdecode: the streams it reads and writes, and their conventions.

LSL (``pylsl``, whose wheel ships liblsl) is what acquisition systems and task software already
speak. popdecode uses four kinds of stream, all stamped on the LSL clock (``local_clock``,
seconds, the same on every machine after LSL's clock synchronisation):

* **spike events** (input): irregular rate, one int32 channel, one sample per spike whose
  value is the spike's unit, an index into the list of unit labels the stream declares in its
  description (``<desc><units><unit><label>ID</label></unit>...``).
* **binned counts** (input): a regular stream, one channel per unit (``<desc><channels>
  <channel><label>ID</label>...``, the LSL convention), one sample per bin of 1 / rate seconds
  holding each unit's count, **stamped at the bin's end** (when the bin is complete). The c
  spikes of a bin are spread evenly inside it (:func:`~popdecode.serve.binned.spread_counts`).
* **decoded** (output of ``popdecode serve``): regular at the serving rate, float32, one
  channel per behaviour dimension, each sample stamped with the time it decodes.
* **behaviour** (output of ``popdecode replay``): the recorded behaviour, float32, one channel
  per dimension plus a last channel ``eval``: 1 where ``popdecode evaluate`` scores the sample.

Units are matched by label against the session's unit ids: the stream must name exactly the
session's units (in any order), or ``serve`` refuses to start and says which are missing and
which are extra.

For tests, benchmarks and a first try on a laptop, :func:`use_loopback_config` makes liblsl keep
every packet on this machine (IPv6 off, ``ResolveScope = machine``, ``KnownPeers = {127.0.0.1}``);
it must run before liblsl is first used, which is what ``--loopback`` on the commands does.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from popdecode.errors import UserError

LOOPBACK_CONFIG = """\
; popdecode --loopback: every LSL packet stays on this machine.
[ports]
IPv6 = disable
[multicast]
ResolveScope = machine
ListenAddress = 127.0.0.1
[lab]
KnownPeers = {127.0.0.1}
[log]
; popdecode says itself when a stream is lost; liblsl's own messages would repeat it.
level = -3
"""

SPIKES, COUNTS, DECODED, BEHAVIOR = "Spikes", "SpikeCounts", "Decoded", "Behavior"


def use_loopback_config(directory: str | Path | None = None) -> Path:
    """Write :data:`LOOPBACK_CONFIG` and point ``LSLAPICFG`` at it (unless already set)."""
    if os.environ.get("LSLAPICFG"):
        return Path(os.environ["LSLAPICFG"])
    directory = Path(directory or tempfile.gettempdir())
    path = directory / "popdecode_lsl_loopback.cfg"
    if not path.exists() or path.read_text() != LOOPBACK_CONFIG:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(LOOPBACK_CONFIG)
        os.replace(tmp, path)
    os.environ["LSLAPICFG"] = str(path)
    return path


def pylsl():
    """The pylsl module, or a one-line error saying how to get it."""
    try:
        import pylsl as module
    except (ImportError, RuntimeError) as err:  # RuntimeError: pylsl found no liblsl
        raise UserError(f"Lab Streaming Layer is not available ({err}); pip install pylsl") from None
    return module


def _lost_error() -> type:
    """pylsl's exception for a stream whose sender is gone (pylsl.util.LostError since 1.16)."""
    from pylsl.util import LostError

    return LostError


# -- stream descriptions -----------------------------------------------------------------------

def stream_info(*, name: str, kind: str, labels: list[str], rate: float, source_id: str,
                fmt: str = "float32", units: list[str] | None = None, meta: dict | None = None):
    """A StreamInfo with channel labels (and, for spike events, the unit list) in its description."""
    lsl = pylsl()
    channel_format = {"float32": lsl.cf_float32, "int32": lsl.cf_int32}[fmt]
    info = lsl.StreamInfo(name, kind, len(labels), rate, channel_format, source_id)
    desc = info.desc()
    channels = desc.append_child("channels")
    for label in labels:
        channels.append_child("channel").append_child_value("label", str(label))
    if units is not None:
        holder = desc.append_child("units")
        for unit in units:
            holder.append_child("unit").append_child_value("label", str(unit))
    if meta:
        node = desc.append_child("popdecode")
        for key, value in meta.items():
            node.append_child_value(key, str(value))
    return info


def _labels(node, child: str) -> list[str]:
    out, item = [], node.child(child)
    while not item.empty():
        out.append(item.child_value("label"))
        item = item.next_sibling(child)
    return out


def input_layout(info) -> tuple[str, list[str], float]:
    """(kind "events" or "binned", unit labels in stream order, bin width in s or 0) of a
    spike stream's full description (``inlet.info()``)."""
    lsl = pylsl()
    desc = info.desc()
    if info.nominal_srate() == lsl.IRREGULAR_RATE:
        if info.channel_count() != 1:
            raise UserError(f"stream '{info.name()}' has an irregular rate and {info.channel_count()} channels; "
                            "a spike-event stream has one channel holding the unit index of each spike")
        units = _labels(desc.child("units"), "unit")
        if not units:
            raise UserError(f"spike-event stream '{info.name()}' declares no units (<desc><units><unit><label>); "
                            "its sender must list the unit label of every index")
        return "events", units, 0.0
    labels = _labels(desc.child("channels"), "channel")
    if len(labels) != info.channel_count():
        raise UserError(f"binned stream '{info.name()}' labels {len(labels)} of its {info.channel_count()} channels; "
                        "every channel must carry its unit's label (<desc><channels><channel><label>)")
    return "binned", labels, 1.0 / info.nominal_srate()


def unit_lookup(stream_units: list[str], session_units: list[str], *, stream: str) -> np.ndarray:
    """int64 [len(stream_units) + 2]: the session index of stream unit i at position i + 1, and
    -1 at both ends, for :func:`session_units`. Refuses, in one line, any unit missing from
    either side."""
    where = {u: i for i, u in enumerate(session_units)}
    missing = [u for u in session_units if u not in set(stream_units)]
    extra = [u for u in stream_units if u not in where]
    if missing or extra or len(set(stream_units)) != len(stream_units):
        def few(xs):
            return ", ".join(xs[:5]) + (f" and {len(xs) - 5} more" if len(xs) > 5 else "") if xs else "none"
        raise UserError(f"stream '{stream}' does not carry the session's units: missing {len(missing)} ({few(missing)}), "
                        f"extra {len(extra)} ({few(extra)}); send exactly the units the model was trained or adapted on")
    return np.array([-1] + [where[u] for u in stream_units] + [-1], dtype=np.int64)


def session_units(lookup: np.ndarray, index: np.ndarray) -> np.ndarray:
    """int64: the session unit of each stream index, -1 (dropped and counted by the decoder)
    for an index the stream does not declare. One clipped take, whatever the indices: a
    live loop pays for every numpy call."""
    return lookup.take(index + 1, mode="clip")


# -- inputs and outputs ----------------------------------------------------------------------------

def resolve(name: str, *, timeout: float):
    """The StreamInfo of the stream called ``name``, or None after ``timeout`` seconds."""
    found = pylsl().resolve_byprop("name", name, minimum=1, timeout=timeout)
    return found[0] if found else None


def _open_inlet(info):
    """An inlet on ``info`` with its full description, its clock offset already measured
    (pylsl measures it on the first pull otherwise, blocking that pull ~0.6 s)."""
    lsl = pylsl()
    inlet = lsl.StreamInlet(info, max_buflen=30, recover=False, processing_flags=lsl.proc_clocksync)
    full = inlet.info(timeout=5.0)
    inlet.open_stream(timeout=5.0)
    inlet.time_correction(timeout=5.0)
    return inlet, full


def _pull_all(inlet, max_samples: int = 4096) -> tuple[np.ndarray, np.ndarray] | None:
    """Every sample waiting in ``inlet`` as (values [n, channels], timestamps [n]), None if
    none; raises pylsl's LostError when the sender is gone."""
    chunks, stamps = [], []
    while True:
        samples, ts = inlet.pull_chunk(timeout=0.0, max_samples=max_samples, as_numpy=True)
        if len(ts):
            chunks.append(samples)
            stamps.append(ts)
        if len(ts) < max_samples:  # the inlet had no more: asking again would only cost a call
            break
    if not chunks:
        return None
    if len(chunks) == 1:
        return chunks[0], stamps[0]
    return np.concatenate(chunks), np.concatenate(stamps)


class _Reopener:
    """Looks for a stream called ``name`` again and opens it, in a background thread, so that
    a loop waiting for a lost stream keeps its ticks (opening takes ~1 s)."""

    def __init__(self, name: str, open_fn, say):
        self.name, self.open_fn, self.say = name, open_fn, say
        self._thread: threading.Thread | None = None
        self._result = None

    def _work(self) -> None:
        info = resolve(self.name, timeout=1.0)
        if info is None:
            return
        try:
            self._result = self.open_fn(info)
        except UserError as err:
            self.say(f"stream '{self.name}' is back but cannot be used: {err}")
            time.sleep(1.0)
        except Exception:  # noqa: BLE001 - gone again while opening: the next try will tell
            pass

    def poll(self):
        """The opened result once a try succeeded, else None (and a new try starts)."""
        if self._thread is not None and self._thread.is_alive():
            return None
        result, self._result = self._result, None
        if result is not None:
            self._thread = None
            return result
        self._thread = threading.Thread(target=self._work, name=f"reopen-{self.name}", daemon=True)
        self._thread.start()
        return None


class SpikeInlet:
    """A spike stream (events or binned) as a :class:`~popdecode.serve.loop.SpikeSource`.

    ``poll`` takes everything received since the last call; when the sender goes away it raises
    :class:`~popdecode.serve.loop.SourceLost`, and ``reconnect`` (never blocking) reports True
    once a stream of the same name is back, carries the same units, and is open.
    """

    def __init__(self, name: str, session_units: list[str], *, info=None, say=None):
        self.name, self.session_units = name, list(session_units)
        say = say or (lambda line: None)
        if info is None:
            info = resolve(name, timeout=5.0)
        if info is None:
            raise UserError(f"no LSL stream named '{name}' found; start the sender first (popdecode replay ...)")
        self._use(self._open(info))
        self._reopener = _Reopener(name, self._open, lambda line: say(f"serve: {line}"))

    def _open(self, info):
        inlet, full = _open_inlet(info)
        kind, labels, bin_width = input_layout(full)
        return inlet, kind, unit_lookup(labels, self.session_units, stream=self.name), bin_width

    def _use(self, opened) -> None:
        self._inlet, self.kind, self._lookup, self.bin_width = opened

    def poll(self) -> tuple[np.ndarray, np.ndarray, float]:
        from popdecode.serve.binned import spread_counts
        from popdecode.serve.loop import SourceLost

        lsl = pylsl()
        try:
            got = _pull_all(self._inlet)
        except _lost_error() as err:
            raise SourceLost(str(err) or "stream lost") from None
        arrival = lsl.local_clock()
        if got is None:
            return np.zeros(0), np.zeros(0, np.int64), arrival
        samples, ts = got
        if self.kind == "events":
            return ts, session_units(self._lookup, samples[:, 0]), arrival
        times, columns = spread_counts(samples, ts, self.bin_width)
        return times, session_units(self._lookup, columns), arrival

    def reconnect(self) -> bool:
        opened = self._reopener.poll()
        if opened is None:
            return False
        self._use(opened)
        return True


class DecodedOutlet:
    """The decoded samples as an LSL stream (a :class:`~popdecode.serve.loop.Sink`)."""

    def __init__(self, *, name: str, columns: list[str], rate: float, meta: dict):
        lsl = pylsl()
        info = stream_info(name=name, kind=DECODED, labels=columns, rate=rate, source_id=f"popdecode:{name}", meta=meta)
        self._outlet = lsl.StreamOutlet(info)

    def push(self, values: np.ndarray, timestamp: float) -> None:
        self._outlet.push_sample(np.asarray(values, dtype=np.float32), timestamp)

    def consumers(self) -> bool:
        return bool(self._outlet.have_consumers())


class SampleInlet:
    """Any numeric stream read as (timestamps, values): the truth (behaviour) stream of a
    recording. Losing it is not an error: it reads as nothing until a stream of that name is
    back (reopened in the background)."""

    def __init__(self, name: str, *, timeout: float = 5.0, say=None):
        self.name = name
        info = resolve(name, timeout=timeout)
        if info is None:
            raise UserError(f"no LSL stream named '{name}' found; start it first")
        self._use(self._open(info))
        self._reopener = _Reopener(name, self._open, say or (lambda line: None))

    def _open(self, info):
        inlet, full = _open_inlet(info)
        return inlet, _labels(full.desc().child("channels"), "channel"), full.channel_count()

    def _use(self, opened) -> None:
        self._inlet, self.labels, self.channel_count = opened
        self.lost = False

    def poll(self) -> tuple[np.ndarray, np.ndarray]:
        empty = np.zeros(0), np.zeros((0, self.channel_count), np.float32)
        if self.lost:
            opened = self._reopener.poll()
            if opened is None:
                return empty
            self._use(opened)
        try:
            got = _pull_all(self._inlet)
        except _lost_error():
            self.lost = True
            return empty
        if got is None:
            return empty
        return got[1], got[0].astype(np.float32)

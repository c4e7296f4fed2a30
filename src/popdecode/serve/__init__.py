"""Serving: decoding a live spike stream in real time.

* :class:`OnlineDecoder` (:mod:`~popdecode.serve.online_decoder`): push spikes as they arrive,
  ``decode(t)`` the behaviour at t from the causal window [t - window, t); no transport.
* :class:`ServeLoop` (:mod:`~popdecode.serve.loop`): a fixed-rate loop around it that skips
  (and counts) late ticks instead of queueing them, over any source and sink.
* :mod:`~popdecode.serve.lsl`: Lab Streaming Layer sources and sinks, and the stream
  conventions; ``popdecode serve`` (:mod:`~popdecode.serve.command`) and ``popdecode replay``
  (:mod:`~popdecode.serve.replay`) on top.
* :class:`Recording` (:mod:`~popdecode.serve.recording`): what was decoded and when, beside
  the true behaviour, with its R^2 and latency table.
"""

from popdecode.serve.loop import ServeLoop, SourceLost
from popdecode.serve.online_decoder import OnlineDecoder
from popdecode.serve.recording import Recording

__all__ = ["OnlineDecoder", "Recording", "ServeLoop", "SourceLost"]

"""Ctrl-C and SIGTERM as a request to stop cleanly, for the long-running serve commands.

The first SIGINT or SIGTERM calls ``stop`` (the loop finishes its tick, writes the recording
and exits 0); a second one, if the first is not honoured quickly enough, interrupts for real.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Callable, Iterator


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None], say: Callable[[str], None]) -> Iterator[None]:
    received = []

    def handler(signum, frame):
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        say(f"{signal.Signals(signum).name} received: stopping after this tick (again to interrupt now)")
        stop()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)

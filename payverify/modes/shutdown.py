"""SIGTERM's clock for `payverify watch`: exit 0 within EXIT_WITHIN_SECONDS of the signal, always.

The deadlines of the orderly stop (asks in flight, queued mail) are measured from the moment the
signal came, not from when the main loop noticed it. Whatever is still stuck when the orderly stop is
over (a thread in a hung exchange, which the interpreter's exit would wait on forever), or when the
backstop's time comes, is abandoned: the log is flushed and the process exits 0. Nothing is half
done by that: every settle is one transaction, and a mail not marked sent goes again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable

import structlog

log = structlog.get_logger("payverify.modes.shutdown")

EXIT_WITHIN_SECONDS = 34.0  # promised: 35 (systemd's TimeoutStopSec is 45)
LEAVE_GRACE_SECONDS = 1.0


class Shutdown:
    def __init__(self, stop: threading.Event, on_stop: Callable[[], object] = lambda: None,
                 exit_within: float = EXIT_WITHIN_SECONDS) -> None:
        self._stop = stop
        self._on_stop = on_stop
        self._exit_within = exit_within
        self._at: float | None = None

    def start(self) -> None:
        threading.Thread(target=self._backstop, name="shutdown", daemon=True).start()

    def by(self, seconds: float) -> float:
        """The monotonic time `seconds` after the signal (after now, if none came: a failed run)."""
        return (self._at or time.monotonic()) + seconds

    def _backstop(self) -> None:
        self._stop.wait()
        self._at = time.monotonic()
        self._on_stop()
        time.sleep(self._exit_within)
        _exit_now("watch.exit_forced", within=self._exit_within)

    def leave(self) -> None:
        """The orderly stop is over: exit now if a thread is still stuck (the interpreter would wait)."""
        others = [t for t in threading.enumerate() if not t.daemon and t is not threading.current_thread()]
        until = time.monotonic() + LEAVE_GRACE_SECONDS  # idle pool threads end in milliseconds
        for thread in others:
            thread.join(max(0.0, until - time.monotonic()))
        stuck = [t.name for t in others if t.is_alive()]
        if stuck:
            _exit_now("watch.threads_abandoned", threads=sorted(stuck))


def _exit_now(event: str, **fields: object) -> None:
    log.error(event, **fields)
    logging.shutdown()  # flushes the log file
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed or broken: nothing more to say there
            stream.flush()
    os._exit(0)

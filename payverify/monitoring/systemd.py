"""systemd's service notifications for `payverify watch` (Type=notify, WatchdogSec=).

The documented sd_notify(3) datagram protocol, which needs no library: one AF_UNIX datagram of
newline-separated KEY=VALUE to the socket named by $NOTIFY_SOCKET (a path, or "@name" in the
abstract namespace). READY=1 once the service runs, WATCHDOG=1 while every loop makes progress,
STOPPING=1 on SIGTERM. $WATCHDOG_USEC (set by WatchdogSec=) is the watchdog's timeout: pinged every
half of it, as sd_watchdog_enabled(3) recommends; a $WATCHDOG_PID other than ours means the watchdog
is not ours. Without $NOTIFY_SOCKET (not run by systemd) every call does nothing.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping

import structlog

from payverify.liveness import Liveness

log = structlog.get_logger("payverify.monitoring.systemd")


class Notifier:
    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._sock: socket.socket | None = None
        if self._address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._lock = threading.Lock()
        self.watchdog_seconds: float | None = None
        usec, pid = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
        if self._sock is not None and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_seconds = int(usec) / 1_000_000

    def notify(self, state: str) -> bool:
        """Send `state` (e.g. "READY=1"); False when there is no socket or it failed (logged)."""
        if self._sock is None:
            return False
        try:
            with self._lock:
                self._sock.sendto(state.encode("ascii"), self._address)
        except OSError as exc:  # systemd gone or the socket unreachable: the service itself goes on
            log.warning("systemd.notify_failed", state=state.split("=", 1)[0], error=exc.strerror or str(exc))
            return False
        return True


class Watchdog:
    """Pings WATCHDOG=1 every half of the watchdog's timeout while no loop in `liveness` is stalled.
    A stalled loop stops the pings (logged once, at error level), and systemd restarts the service."""

    def __init__(self, notifier: Notifier, liveness: Liveness) -> None:
        self._notifier = notifier
        self._liveness = liveness
        self._end = threading.Event()

    def start(self) -> None:
        if self._notifier.watchdog_seconds is None:
            return
        threading.Thread(target=self._run, args=(self._notifier.watchdog_seconds / 2,), name="watchdog",
                         daemon=True).start()

    def close(self) -> None:
        self._end.set()

    def _run(self, every: float) -> None:
        said = False
        while not self._end.wait(every):
            stalled = self._liveness.stalled()
            if stalled:
                if not said:
                    log.error("watch.loop_stalled", loops=stalled,
                              hint="no watchdog ping from now on: systemd restarts the service")
                    said = True
                continue
            said = False
            self._notifier.notify("WATCHDOG=1")

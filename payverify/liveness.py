"""What the long-running loops of `payverify watch` report: that they are alive, and what went wrong.

Each loop ticks after every pass (before a long wait it says how long it will be quiet). systemd's
watchdog is pinged only while no loop has been quiet for longer than the allowance beyond what it
announced (monitoring/systemd.py), so a loop that hangs gets the service restarted. An exception a
loop survives is counted by loop (`payverify_thread_errors_total{loop=...}` in the metrics file).
"""

from __future__ import annotations

import threading
import time
from collections import Counter

# A pass of a loop holds at most a few bounded steps (a statement: 30 s, an SMTP command: 30 s, a
# compose wait: 10 s), so a loop quiet for longer than this beyond what it announced is stuck.
STALL_SECONDS = 90.0


class Liveness:
    def __init__(self, allowance: float = STALL_SECONDS) -> None:
        self.allowance = allowance
        self._lock = threading.Lock()
        self._due: dict[str, float] = {}  # loop -> the monotonic time it must have ticked again by
        self._errors: Counter[str] = Counter()

    def tick(self, loop: str, *, quiet: float = 0.0) -> None:
        """`loop` made progress; it may now be quiet for `quiet` seconds (a backoff, a budget) more."""
        with self._lock:
            self._due[loop] = time.monotonic() + self.allowance + quiet

    def done(self, loop: str) -> None:
        """`loop` has ended on purpose: no longer watched."""
        with self._lock:
            self._due.pop(loop, None)

    def failed(self, loop: str) -> None:
        """`loop` survived an exception (logged by the loop itself)."""
        with self._lock:
            self._errors[loop] += 1

    def errors(self) -> dict[str, int]:
        with self._lock:
            return dict(self._errors)

    def stalled(self) -> list[str]:
        """The loops that have not ticked in time."""
        now = time.monotonic()
        with self._lock:
            return sorted(loop for loop, due in self._due.items() if due < now)

"""One rate limit for every SumUp request of a run, shared by its worker threads.

Requests are spaced 1/rate apart (no bursts), so any one-second window holds at most rate + 1 of
them. A 429 slows the whole run: nobody sends until Retry-After has passed (1 s when absent) and
the rate is halved; it recovers by 10 % per accepted request, back up to the configured rate.
rate 0 means no limit, except the pause after a 429.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

DEFAULT_PAUSE = 1.0
MIN_RATE = 0.5


class RateLimiter:
    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.configured = rate
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self._paused_until = 0.0

    def acquire(self) -> None:
        """Wait for this request's slot."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot, self._paused_until)
            if self.rate > 0:
                self._next_slot = slot + 1.0 / self.rate
            wait = slot - now
        if wait > 0:
            self._sleep(wait)

    def rate_limited(self, retry_after: float | None) -> None:
        """SumUp said 429: pause everyone, and slow down."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + (retry_after or DEFAULT_PAUSE))
            if self.rate > 0:
                self.rate = max(MIN_RATE, self.rate / 2)

    def accepted(self) -> None:
        """A request went through: recover towards the configured rate."""
        if self.rate < self.configured:
            with self._lock:
                self.rate = min(self.configured, self.rate * 1.1)

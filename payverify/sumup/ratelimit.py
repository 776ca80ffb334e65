"""One rate limit for every SumUp request of a run, shared by its worker threads, and the run's waits.

Requests are spaced 1/rate apart (no bursts), so any one-second window holds at most rate + 1 of
them. A 429 slows the whole run: nobody sends until Retry-After has passed (1 s when absent) and
the rate is halved; it recovers by 10 % per accepted request, back up to the configured rate. The
slots taken before the 429 are void: their requests take new ones after the pause, at the halved
rate, rather than all going at the pause's end.
rate 0 means no limit, except the pause after a 429.

A Retry-After longer than RETRY_AFTER_CAP_SECONDS is not waited for: until it has passed, every
request of the run fails at once, unsent (SumUpUnavailable, failure http_429), so the orders left stay
as they were and are asked again later. For a sweep that is the rest of the run (SumUp's ten minutes
outlast its budget); watch, which lives on, asks again once it has passed. A run is never held for it.

Every wait of the run (a request's slot, a pause, the client's retry sleeps: `wait`) ends early at the
run's deadline or when `stop` is set (SIGTERM); the request that waited is then not sent
(SumUpUnavailable, failure not_sent), and neither is any request after the deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from payverify.errors import SumUpUnavailable
from payverify.sumup.answer import HTTP_429, NOT_SENT

DEFAULT_PAUSE = 1.0
MIN_RATE = 0.5
# The longest Retry-After the run waits for (documented in the README): longer ends its SumUp work.
RETRY_AFTER_CAP_SECONDS = 60.0


def over_cap(retry_after: float | None) -> bool:
    return retry_after is not None and retry_after > RETRY_AFTER_CAP_SECONDS


class RateLimiter:
    def __init__(self, rate: float, *, stop: threading.Event | None = None, deadline: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], object] | None = None) -> None:
        """`deadline` is on `clock` (time.monotonic()); `sleep` defaults to waiting on `stop`, so a stop
        wakes every waiter at once (tests inject a fake clock and sleep)."""
        self.configured = rate
        self.rate = rate
        self._stop = stop
        self._deadline = deadline
        self._clock = clock
        self._sleep = sleep if sleep is not None else (stop.wait if stop is not None else time.sleep)
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._pauses = 0  # 429s so far: a slot taken before the latest one is void
        self._throttled_until = 0.0  # a Retry-After over the cap: nothing is sent until then

    def _over(self) -> bool:
        """The run is stopping or past its deadline: nothing more is sent."""
        return ((self._stop is not None and self._stop.is_set())
                or (self._deadline is not None and self._clock() >= self._deadline))

    def wait(self, seconds: float) -> bool:
        """Wait `seconds`, or less when the deadline or the stop comes first. True: the wait is over and
        the run goes on; False: it was cut short (or the run was already over), send nothing."""
        if self._over():
            return False
        end = self._clock() + max(0.0, seconds)
        if self._deadline is not None and end > self._deadline:
            self._sleep(max(0.0, self._deadline - self._clock()))
            return False
        while (left := end - self._clock()) > 0 and not self._over():
            self._sleep(left)
        return not self._over()

    def acquire(self, within: float | None = None) -> None:
        """Wait for this request's slot (and any pause). Raises SumUpUnavailable when it must not be sent,
        and, with `within` (seconds), when its slot is further off than that: a request made while
        holding a lock (the token refresh) does not wait out a pause."""
        give_up = None if within is None else self._clock() + within
        with self._lock:
            slot, pauses = self._take_slot(give_up), self._pauses
        while True:
            if not self.wait(slot - self._clock()):
                raise SumUpUnavailable("not sent: the run stopped or reached its time budget", failure=NOT_SENT)
            with self._lock:
                if self._pauses == pauses:
                    self._refuse_if_throttled()
                    return
                slot, pauses = self._take_slot(give_up), self._pauses  # a 429 while we waited

    def _take_slot(self, give_up: float | None) -> float:
        """The next free slot, reserved (under the lock); not reserved when it is later than `give_up`."""
        self._refuse_if_throttled()
        slot = max(self._clock(), self._next_slot, self._paused_until)
        if give_up is not None and slot > give_up:
            raise _too_far(give_up - self._clock())
        if self.rate > 0:
            self._next_slot = slot + 1.0 / self.rate
        return slot

    def rate_limited(self, retry_after: float | None) -> bool:
        """SumUp said 429: pause everyone, and slow down. A Retry-After over the cap refuses every
        request until it has passed instead. True when the request may be tried again after the pause."""
        pause = DEFAULT_PAUSE if retry_after is None else retry_after
        with self._lock:
            if over_cap(pause):
                self._throttled_until = max(self._throttled_until, self._clock() + pause)
                return False
            self._paused_until = max(self._paused_until, self._clock() + pause)
            self._next_slot, self._pauses = self._paused_until, self._pauses + 1
            if self.rate > 0:
                self.rate = max(MIN_RATE, self.rate / 2)
        return True

    def accepted(self) -> None:
        """A request went through: recover towards the configured rate."""
        if self.rate < self.configured:
            with self._lock:
                self.rate = min(self.configured, self.rate * 1.1)

    def _refuse_if_throttled(self) -> None:
        if (left := self._throttled_until - self._clock()) > 0:
            raise SumUpUnavailable(f"not sent: SumUp asked for no request for {left:.0f} s more (Retry-After "
                                   f"over the {RETRY_AFTER_CAP_SECONDS:.0f} s cap); asked again after it",
                                   failure=HTTP_429, http_status=429)


def _too_far(within: float) -> SumUpUnavailable:
    return SumUpUnavailable(f"not sent: SumUp asked for a pause longer than {within:g} s; asked again later",
                            failure=NOT_SENT)

"""The shared SumUp rate limit, on a fake clock."""

from __future__ import annotations

import threading
import time

import pytest

from payverify.errors import SumUpUnavailable
from payverify.sumup.ratelimit import RETRY_AFTER_CAP_SECONDS, RateLimiter
from tests.helpers import max_in_any_second


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sent: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def send(limiter: RateLimiter, clock: FakeClock, n: int) -> None:
    for _ in range(n):
        limiter.acquire()
        clock.sent.append(clock.now)




def test_rate_limit_holds_in_every_one_second_window():
    """At 10 requests/s, no one-second window ever holds more than 11 requests."""
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock.clock, sleep=clock.sleep)
    send(limiter, clock, 100)
    assert max_in_any_second(clock.sent) <= 11
    assert clock.sent[-1] - clock.sent[0] >= 9.8  # and it does not just bunch them at the end


def test_rate_limited_pauses_everyone_halves_and_recovers():
    """A 429 with Retry-After 3: nobody sends for 3 s, the rate halves, and accepted requests bring it back."""
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock.clock, sleep=clock.sleep)
    send(limiter, clock, 1)
    limiter.rate_limited(3.0)
    send(limiter, clock, 1)
    assert clock.sent[1] - clock.sent[0] >= 3.0
    assert limiter.rate == 5
    for _ in range(20):
        limiter.accepted()
    assert limiter.rate == 10


def test_no_limit_means_no_waiting_except_after_429():
    """rate 0: requests go straight out; a 429 still pauses (1 s without Retry-After)."""
    clock = FakeClock()
    limiter = RateLimiter(0, clock=clock.clock, sleep=clock.sleep)
    send(limiter, clock, 50)
    assert clock.now == 100.0
    limiter.rate_limited(None)
    send(limiter, clock, 1)
    assert clock.now == 101.0


def test_retry_after_up_to_the_cap_pauses_longer_ends_the_runs_sumup_work():
    """60 s (the cap) pauses everyone 60 s; 61 s pauses nobody but refuses every later request at once,
    unsent, as http_429 (the orders left are asked next run)."""
    clock = FakeClock()
    limiter = RateLimiter(0, clock=clock.clock, sleep=clock.sleep)
    assert limiter.rate_limited(RETRY_AFTER_CAP_SECONDS) is True
    send(limiter, clock, 1)
    assert clock.now == 100.0 + RETRY_AFTER_CAP_SECONDS
    assert limiter.rate_limited(RETRY_AFTER_CAP_SECONDS + 1) is False
    with pytest.raises(SumUpUnavailable) as raised:
        limiter.acquire()
    assert raised.value.failure == "http_429" and raised.value.http_status == 429
    assert clock.now == 100.0 + RETRY_AFTER_CAP_SECONDS  # no waiting for it


def test_waits_end_at_the_runs_deadline_and_nothing_is_sent_after_it():
    """A pause past the deadline is waited only up to the deadline; the request is then refused
    (not_sent), and so is every request after the deadline, even with no wait at all."""
    clock = FakeClock()
    limiter = RateLimiter(0, deadline=110.0, clock=clock.clock, sleep=clock.sleep)
    assert limiter.wait(4) is True and clock.now == 104.0
    limiter.rate_limited(30)
    with pytest.raises(SumUpUnavailable) as raised:
        limiter.acquire()
    assert raised.value.failure == "not_sent" and clock.now == 110.0
    limiter = RateLimiter(0, deadline=110.0, clock=clock.clock, sleep=clock.sleep)
    with pytest.raises(SumUpUnavailable):
        limiter.acquire()
    assert limiter.wait(0) is False


def test_a_stop_wakes_every_waiter_at_once():
    """Real threads waiting out a 60 s pause: set the stop and each returns within a moment, unsent."""
    stop = threading.Event()
    limiter = RateLimiter(0, stop=stop)
    limiter.rate_limited(60)
    outcomes: list[str] = []

    def waiter() -> None:
        try:
            limiter.acquire()
            outcomes.append("sent")
        except SumUpUnavailable as exc:
            outcomes.append(exc.failure)

    threads = [threading.Thread(target=waiter) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    started = time.monotonic()
    stop.set()
    for t in threads:
        t.join(timeout=5)
    assert time.monotonic() - started < 2
    assert outcomes == ["not_sent"] * 4


def test_a_long_retry_after_refuses_requests_only_until_it_has_passed():
    """A long-lived limiter (watch's) is not throttled for ever: after the Retry-After, requests go out."""
    clock = FakeClock()
    limiter = RateLimiter(0, clock=clock.clock, sleep=clock.sleep)
    limiter.rate_limited(600)
    clock.now += 599
    with pytest.raises(SumUpUnavailable):
        limiter.acquire()
    clock.now += 1
    send(limiter, clock, 2)
    assert clock.sent == [clock.now] * 2  # sent at once, no wait


def test_a_slot_further_off_than_within_is_refused_unsent_and_not_reserved():
    """acquire(within=): for a request made holding a lock, a pause is not waited out."""
    now = [0.0]
    limiter = RateLimiter(1.0, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    limiter.acquire(within=5.0)  # the first slot is now
    limiter.acquire(within=5.0)  # the next one a second away: waited for
    assert now[0] == 1.0
    assert limiter.rate_limited(30.0)
    with pytest.raises(SumUpUnavailable) as refused:
        limiter.acquire(within=5.0)
    assert refused.value.failure == "not_sent" and now[0] == 1.0
    now[0] = 31.0
    limiter.acquire(within=5.0)  # the pause is over
    assert now[0] == 31.0


class SteppedClock:
    """A fake clock for threads: each sleeper waits until the test moves the time to its wake-up, and
    the test moves it only once every thread is asleep or done, so what each thread sees is certain."""

    def __init__(self) -> None:
        self.now = 100.0
        self._cond = threading.Condition()
        self._wakeups: list[float] = []
        self.sent: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._cond:
            wake = self.now + seconds
            self._wakeups.append(wake)
            self._cond.notify_all()
            self._cond.wait_for(lambda: self.now >= wake)
            self._wakeups.remove(wake)

    def send(self, limiter: RateLimiter) -> None:
        limiter.acquire()
        with self._cond:
            self.sent.append(self.now)
            self._cond.notify_all()

    def settle(self, threads: int) -> bool:
        """Until every thread sleeps or has sent; False when all have sent."""
        with self._cond:
            assert self._cond.wait_for(
                lambda: len(self.sent) + sum(w > self.now for w in self._wakeups) == threads, timeout=30)
            return len(self.sent) < threads

    def advance(self) -> None:
        with self._cond:
            self.now = min(w for w in self._wakeups if w > self.now)
            self._cond.notify_all()


def test_after_a_429_the_waiting_requests_are_spaced_at_the_halved_rate_not_sent_at_once():
    """Six workers at 10 requests/s: one sends, five wait for their slots; a 429 (Retry-After 0.5 s)
    comes. They go after the pause 1/5 s apart (the halved rate), not all at the moment it ends."""
    clock = SteppedClock()
    limiter = RateLimiter(10, clock=clock.clock, sleep=clock.sleep)
    threads = [threading.Thread(target=clock.send, args=(limiter,)) for _ in range(6)]
    for thread in threads:
        thread.start()
    clock.settle(6)  # one sent at 100.0, five asleep until their slots
    assert clock.sent == [100.0]
    limiter.rate_limited(0.5)
    while clock.settle(6):
        clock.advance()
    for thread in threads:
        thread.join()
    assert clock.sent[1:] == pytest.approx([100.5, 100.7, 100.9, 101.1, 101.3])

"""The shared SumUp rate limit, on a fake clock."""

from __future__ import annotations

from payverify.sumup.ratelimit import RateLimiter
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

"""The run's memory of credentials (sumup/credentials.py): each fact lives a minute, so a watch that
runs for weeks acts again on a reconnect or a new expiry, while a burst within the minute is still
de-duplicated."""

from __future__ import annotations

import threading

from payverify.sumup.credentials import MEMORY_SECONDS, RunMemory


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_fact_is_new_once_per_minute():
    clock = FakeClock()
    memory = RunMemory(clock=clock)
    assert memory.first("refreshed_after_401", 7) is True
    assert memory.has("refreshed_after_401", 7)
    clock.now += MEMORY_SECONDS - 1
    assert memory.first("refreshed_after_401", 7) is False  # the burst: one refresh
    assert memory.first("refreshed_after_401", 8) is True  # another artist is another fact
    clock.now += 1
    assert not memory.has("refreshed_after_401", 7)
    assert memory.first("refreshed_after_401", 7) is True  # a minute on: refresh again
    assert memory.first("refreshed_after_401", 7) is False


def test_forget_makes_the_next_time_the_first():
    memory = RunMemory(clock=FakeClock())
    assert memory.first("working", None) is True
    memory.forget("working", None)
    assert memory.first("working", None) is True
    memory.forget("not-noted", 1)  # no error


def test_memory_holds_about_a_minute_of_facts():
    """One fact a second for a day: what the memory holds stays near a minute's worth."""
    clock = FakeClock()
    memory = RunMemory(clock=clock)
    for second in range(86_400):
        memory.first("reported", second)
        clock.now += 1
        assert memory.size() <= 2 * MEMORY_SECONDS + 1


def test_one_first_among_threads_racing_for_it():
    memory = RunMemory()
    barrier = threading.Barrier(16)
    firsts: list[bool] = []

    def note() -> None:
        barrier.wait()
        firsts.append(memory.first("refreshed_after_401", 1))

    threads = [threading.Thread(target=note) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(firsts) == [False] * 15 + [True]

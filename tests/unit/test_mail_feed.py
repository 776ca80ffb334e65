"""The signal between a sweep and its mail workers: a poke during an empty look is never missed, and
a worker stops only once the sweep has finished and nothing was queued since its last look."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from payverify.mail import feed as feed_module
from payverify.mail.feed import MailFeed


@pytest.fixture
def feed() -> MailFeed:
    return MailFeed(deadline=time.monotonic() + 60)


def test_a_poke_after_the_mark_means_look_again(feed):
    mark = feed.mark()
    feed.poke()  # the sweep queued mail while the worker was looking
    assert feed.wait_for_more(mark) is True


def test_finishing_means_one_more_look_then_stop(feed):
    """What was queued last (the stuck-orders digest, after the sweep) is still looked for once."""
    mark = feed.mark()
    feed.finish(deadline=time.monotonic() + 30)
    assert feed.wait_for_more(mark) is True
    assert feed.wait_for_more(feed.mark()) is False


def test_finished_after_a_poke_still_looks_once_more(feed):
    """The last order's mail was queued just before the sweep finished: it is not left behind."""
    mark = feed.mark()
    feed.poke()
    feed.finish(deadline=time.monotonic() + 30)
    assert feed.wait_for_more(mark) is True
    assert feed.wait_for_more(feed.mark()) is False


def test_an_idle_worker_looks_again_after_the_poll_interval(feed, monkeypatch):
    """Rows whose backoff ends while the sweep runs are found without a poke."""
    monkeypatch.setattr(feed_module, "IDLE_POLL_SECONDS", 0.05)
    started = time.monotonic()
    assert feed.wait_for_more(feed.mark()) is True
    assert 0.04 <= time.monotonic() - started < 5


def test_a_waiting_worker_wakes_at_the_poke():
    feed = MailFeed(deadline=time.monotonic() + 60)
    woke: list[float] = []
    mark = feed.mark()

    def worker() -> None:
        feed.wait_for_more(mark)
        woke.append(time.monotonic())

    thread = threading.Thread(target=worker)
    thread.start()
    time.sleep(0.1)
    poked = time.monotonic()
    feed.poke()
    thread.join(timeout=5)
    assert woke and woke[0] - poked < 0.5  # well before the one-second poll


def test_only_this_runs_mail_until_the_sweep_is_done():
    started = datetime(2026, 12, 1, 21, 0, tzinfo=UTC)
    feed = MailFeed(deadline=time.monotonic() + 60, fresh_since=started)
    assert feed.fresh_since == started
    feed.finish(deadline=time.monotonic() + 30)
    assert feed.fresh_since is None


def test_finish_moves_the_deadline(feed):
    end = time.monotonic() + 5
    feed.finish(deadline=end)
    assert feed.deadline == end

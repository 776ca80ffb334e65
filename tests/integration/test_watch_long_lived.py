"""What a long-running `payverify watch` keeps is refreshed: a real process, a real Postgres, the SumUp
simulator. An artist who reconnects SumUp is verified again by the same process; a 401 an hour (here:
a minute) after the last one is refreshed again; the metrics its housekeeping writes are watch's own.

Housekeeping (a sweep with a memory of its own) runs at the start and then every minute, and would
settle these orders itself within that minute: each test acts right after a housekeeping pass has
ended, and asserts the order was settled by the watch's own asks (audit rows of its run id, where a
housekeeping pass's carry a "-N" suffix), so neither outcome depends on which comes first.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from payverify.sumup.credentials import MEMORY_SECONDS
from tests.helpers import rows, scalar, status_of
from tests.integration.test_oauth import RECONNECT, artist_tokens
from tests.observers import parse_prometheus, value
from tests.processes import after_a_pass, eventually, stop


def watched_oauth_artist(start_watch, seed, db, name: str):
    """An OAuth artist with an event on sale, and a watch right after its first housekeeping pass: the
    artist, their ticket type, the watch's process, the passes ended and the watch's own run id."""
    artist = seed.artist(name, oauth=True, token_expires_in=timedelta(hours=1))
    event = seed.event(artist)
    standing = seed.ticket_type(event)
    proc = start_watch()
    passes, watch_run = after_a_pass(db, at_least=1)
    return artist, event, standing, proc, passes, watch_run


def settled_by(db, order_id: int) -> list[tuple[str, str]]:
    """(run id, outcome) of each attempt on the order, oldest first."""
    return [(r["run_id"], r["outcome"]) for r in rows(
        db, "SELECT run_id, outcome FROM payverify_audit WHERE order_id = %(id)s ORDER BY id", id=order_id)]


def reconnect_alerts(db) -> int:
    return scalar(db, "SELECT count(*) FROM payverify_outbox WHERE kind = %(k)s", k=RECONNECT)


def test_an_artist_who_reconnects_is_verified_again_by_the_same_watch(start_watch, seed, db, sumup):
    """The artist's refresh token is refused (they disconnected payverify at SumUp) while their access
    token has expired: their returning order waits and staff get one "reconnect SumUp" alert. The
    artist reconnects (the site stores the new pair); their next returning order is verified and
    completed by the same watch at once, not by a restart nor the next housekeeping pass."""
    artist, event, standing, proc, _, watch_run = watched_oauth_artist(start_watch, seed, db, "Reconnecting Artist")

    sumup.revoke_refresh_token(artist.refresh_token)
    with db.transaction() as tx:  # the hour is up
        tx.fetch_sql("UPDATE artists_artist SET sumup_token_expires_at = now() - interval '1 minute' "
                     "WHERE id = %(id)s RETURNING id", {"id": artist.id})
    waiting = seed.order([(standing, 1)], event_id=event)
    eventually(lambda: (watch_run, "unchanged") in settled_by(db, waiting.id), what="the refused order's ask")
    assert status_of(db, waiting.id) == "pending_verification"
    assert sumup.get_count(waiting.checkout_id) == 0
    eventually(lambda: reconnect_alerts(db) == 1, what="the reconnect alert")

    # The artist reconnects: the site's OAuth callback stores the new pair SumUp gave it.
    access, refresh = "at_reconnected_0123456789", "rt_reconnected_0123456789"
    sumup.add_access_token(access, artist.merchant_code)
    sumup.add_refresh_token(refresh, artist.merchant_code)
    with db.transaction() as tx:
        tx.fetch_sql("UPDATE artists_artist SET sumup_access_token = %(a)s, sumup_refresh_token = %(r)s, "
                     "sumup_token_expires_at = %(e)s WHERE id = %(id)s RETURNING id",
                     {"a": access, "r": refresh, "e": datetime.now(UTC) + timedelta(hours=1), "id": artist.id})
    returning = seed.order([(standing, 2)], event_id=event)

    eventually(lambda: status_of(db, returning.id) == "completed", what="the reconnected artist's order")
    assert settled_by(db, returning.id) == [(watch_run, "completed")]
    assert scalar(db, "SELECT count(*) FROM tickets_ticket WHERE order_id = %(id)s", id=returning.id) == 2
    # The order that waited is asked again on watch's schedule and completes too, by the watch.
    eventually(lambda: status_of(db, waiting.id) == "completed", within=60 + 30, what="the waiting order")
    assert settled_by(db, waiting.id)[-1][1] == "completed"
    # Credentials work again: the alert's key is free, so a later disconnection alerts again.
    eventually(lambda: scalar(db, "SELECT count(*) FROM payverify_outbox WHERE kind = %(k)s "
                                  "AND dedup_key IS NOT NULL", k=RECONNECT) == 0, what="the re-armed alert")
    assert sumup.token_calls == 1  # the refused refresh token was tried once, then the new pair used
    tokens = artist_tokens(db, artist.id)
    assert (tokens["access"], tokens["refresh"]) == (access, refresh)
    code, err = stop(proc)
    assert code == 0, err
    assert access not in err and refresh not in err


def test_a_401_later_in_the_watch_s_life_refreshes_again(start_watch, seed, db, sumup):
    """SumUp stops accepting the artist's access token (it expired early): the watch refreshes and
    completes the order. A minute and more later it happens again to the new token: the same watch
    refreshes again, instead of reporting the artist to staff and leaving the order waiting."""
    artist, event, standing, proc, passes, watch_run = watched_oauth_artist(start_watch, seed, db, "Expiring Artist")

    sumup.expire_access_token(artist.access_token)
    first = seed.order([(standing, 1)], event_id=event)
    eventually(lambda: status_of(db, first.id) == "completed", what="the first order")
    refreshed_at = time.monotonic()
    assert settled_by(db, first.id) == [(watch_run, "completed")]
    assert sumup.token_calls == 1

    # Past the memory's minute, and right after a housekeeping pass: the next is most of a minute away.
    after_a_pass(db, at_least=passes + 1)
    time.sleep(max(0.0, refreshed_at + MEMORY_SECONDS + 1 - time.monotonic()))
    sumup.expire_access_token(artist_tokens(db, artist.id)["access"])
    second = seed.order([(standing, 1)], event_id=event)

    eventually(lambda: status_of(db, second.id) == "completed", what="the second order")
    assert settled_by(db, second.id) == [(watch_run, "completed")]
    assert sumup.token_calls == 2
    assert reconnect_alerts(db) == 0  # no "SumUp refused the artist (HTTP 401)" to staff
    code, err = stop(proc)
    assert code == 0, err
    assert "HTTP 401" not in err


def test_watch_publishes_its_metrics_as_watch(start_watch, db, tmp_path):
    """A host that runs only `payverify watch` (no cron sweep ever ran): after its first housekeeping
    pass, the metrics file's last success is that pass, not 0."""
    metrics = tmp_path / "payverify.prom"
    started = time.time()
    proc = start_watch(PAYVERIFY_METRICS_FILE=str(metrics))
    after_a_pass(db, at_least=1)
    eventually(metrics.exists, what="the metrics file")
    samples = parse_prometheus(metrics.read_text())
    assert started - 5 <= value(samples, "payverify_last_success_timestamp_seconds") <= time.time() + 5
    assert value(samples, "payverify_last_run_timestamp_seconds") >= started - 5
    assert value(samples, "payverify_runs_total", exit_status="0") >= 1
    assert scalar(db, "SELECT count(*) FROM payverify_runs WHERE command = 'sweep'") == 0
    assert stop(proc)[0] == 0

"""Artists' OAuth tokens end to end: real `payverify sweep` processes, real Postgres, the SumUp simulator."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from payverify.exitcodes import ExitStatus
from payverify_dev.seed import PLATFORM_KEY
from payverify_dev.sumup_server import Scripted
from tests.helpers import rows, scalar, tickets_of

ROOT = Path(__file__).resolve().parents[2]
RECONNECT = "admin_alert_reconnect_sumup"


def order_row(db, order_id):
    return rows(db, "SELECT status, paid_at FROM orders_order WHERE id = %(id)s", id=order_id)[0]


def artist_tokens(db, artist_id):
    return rows(db, "SELECT sumup_access_token AS access, sumup_refresh_token AS refresh, "
                    "sumup_token_expires_at AS expires_at FROM artists_artist WHERE id = %(id)s", id=artist_id)[0]


count = scalar
tickets = tickets_of


def checkout_statuses(sumup, checkout_id):
    return [r.status for r in sumup.requests if r.checkout_id == checkout_id]


def shop(seed, artist, price="12.50"):
    """An event of `artist` with one ticket type: (event_id, ticket_type_id)."""
    event = seed.event(artist)
    return event, seed.ticket_type(event, "Standing", price)


@pytest.fixture
def assert_no_secrets(env, sumup, db):
    """Assert that no secret shows in the processes' stdout/stderr, the log file, audit reasons or outbox rows."""

    def check(*results, artists=()):
        secrets = {PLATFORM_KEY, sumup.client_secret}
        for artist in artists:
            secrets |= {artist.access_token, artist.refresh_token}
        with sumup._lock:  # every access and refresh token the simulator was given or issued
            secrets |= set(sumup._access) | set(sumup._refresh)
        for row in rows(db, "SELECT sumup_access_token, sumup_refresh_token FROM artists_artist"):
            secrets |= set(row.values())
        secrets = {s for s in secrets if s}
        log_file = Path(env["PAYVERIFY_LOG_FILE"])
        assert log_file.exists() and log_file.stat().st_size > 0, "the run wrote no log: nothing was checked"
        places = {"log file": log_file.read_text("utf-8"),
                  "audit": count(db, "SELECT coalesce(string_agg(reason, E'\\n'), '') FROM payverify_audit"),
                  "outbox": count(db, "SELECT coalesce(string_agg(context::text, E'\\n'), '') FROM payverify_outbox")}
        for i, result in enumerate(results):
            places[f"stdout of run {i}"] = result.stdout
            places[f"stderr of run {i}"] = result.stderr
        leaks = [(where, s[:6] + "...") for where, text in places.items() for s in secrets if s in text]
        assert not leaks, f"secrets leaked: {leaks}"

    return check


def test_expired_token_is_refreshed_once_and_new_pair_stored(seed, db, sumup, run_payverify, assert_no_secrets):
    """An expired access token is refreshed once before use; the rotated pair and new expiry are stored."""
    artist = seed.artist(oauth=True, token_expires_in=timedelta(minutes=-5), register_access_token=False)
    event, standing = shop(seed, artist)
    order = seed.order([(standing, 2)], event_id=event)
    before = artist_tokens(db, artist.id)

    result = run_payverify("sweep")

    assert result.returncode == ExitStatus.OK, result.stderr
    assert result.stdout == "" and result.stderr == ""  # silent under cron
    assert sumup.token_calls == 1
    # Refreshed BEFORE use: the checkout was asked once, with the new token, after the /token call.
    paths = [r.path for r in sumup.requests]
    assert paths == ["/token", f"/v0.1/checkouts/{order.checkout_id}"]
    assert checkout_statuses(sumup, order.checkout_id) == [200]
    after = artist_tokens(db, artist.id)
    assert after["refresh"] == sumup.current_refresh_token(artist.merchant_code) != artist.refresh_token
    assert after["access"] and after["access"] != artist.access_token
    assert after["expires_at"] > datetime.now(UTC) + timedelta(minutes=50) > before["expires_at"]
    assert order_row(db, order.id)["status"] == "completed"
    assert tickets(db, order.id) == 2
    # The stored access token is one SumUp accepts.
    reply = requests.get(f"{sumup.url}/v0.1/checkouts/{order.checkout_id}",
                         headers={"Authorization": f"Bearer {after['access']}"}, timeout=5)
    assert reply.status_code == 200
    assert_no_secrets(result, artists=[artist])


def test_fresh_token_is_used_without_refresh(seed, db, sumup, run_payverify, assert_no_secrets):
    """A token that is still fresh is used as it is: no /token call, tokens in the DB unchanged."""
    artist = seed.artist(oauth=True, token_expires_in=timedelta(hours=1))
    event, standing = shop(seed, artist)
    order = seed.order([(standing, 1)], event_id=event)
    before = artist_tokens(db, artist.id)

    result = run_payverify("sweep")

    assert result.returncode == ExitStatus.OK, result.stderr
    assert sumup.token_calls == 0
    assert artist_tokens(db, artist.id) == before
    assert order_row(db, order.id)["status"] == "completed"
    assert tickets(db, order.id) == 1
    assert_no_secrets(result, artists=[artist])


def test_unauthorized_fresh_token_refreshes_once_and_retries(seed, db, sumup, run_payverify, assert_no_secrets):
    """A 401 with a token the DB thinks fresh: exactly one refresh, one retry, and the order completes."""
    artist = seed.artist(oauth=True, token_expires_in=timedelta(hours=1), register_access_token=False)
    event, standing = shop(seed, artist)
    order = seed.order([(standing, 3)], event_id=event)

    result = run_payverify("sweep")

    assert result.returncode == ExitStatus.OK, result.stderr
    assert sumup.token_calls == 1
    assert checkout_statuses(sumup, order.checkout_id) == [401, 200]
    assert artist_tokens(db, artist.id)["refresh"] == sumup.current_refresh_token(artist.merchant_code)
    assert order_row(db, order.id)["status"] == "completed"
    assert tickets(db, order.id) == 3
    assert_no_secrets(result, artists=[artist])


def test_unauthorized_after_refresh_leaves_order_unchanged(seed, db, sumup, run_payverify, assert_no_secrets):
    """401 again after the one refresh: the order stays as it was (audit 'unchanged'), staff get one
    alert, and the artist's next order in the same run (already using the refreshed token) does not
    refresh again."""
    artist = seed.artist(oauth=True, token_expires_in=timedelta(hours=1))
    event, standing = shop(seed, artist)
    order = seed.order([(standing, 1)], event_id=event)
    second = seed.order([(standing, 1)], event_id=event)
    sumup.script(order.checkout_id, Scripted(status=401), Scripted(status=401))
    sumup.script(second.checkout_id, Scripted(status=401))

    # One worker, so "the next order" really comes after the refresh.
    result = run_payverify("sweep", extra_env={"PAYVERIFY_CONCURRENCY": "1"})

    assert result.returncode == ExitStatus.OK, result.stderr
    assert sumup.token_calls == 1
    assert order_row(db, second.id)["status"] == "pending_verification"
    assert count(db, "SELECT count(*) FROM payverify_outbox WHERE kind = 'admin_alert_reconnect_sumup'") == 1
    assert "refused" in result.stderr and "HTTP 401" in result.stderr
    assert checkout_statuses(sumup, order.checkout_id) == [401, 401]
    assert order_row(db, order.id)["status"] == "pending_verification"
    assert tickets(db, order.id) == 0
    assert count(db, f"SELECT count(*) FROM payverify_audit WHERE order_id = {order.id} "
                     "AND outcome = 'unchanged' AND http_status = 401") == 1
    # The rotated refresh token was kept even though the retry failed: the artist is not locked out.
    assert artist_tokens(db, artist.id)["refresh"] == sumup.current_refresh_token(artist.merchant_code)
    assert_no_secrets(result, artists=[artist])


def test_invalid_grant_leaves_artist_alone_and_alerts_once(seed, db, sumup, run_payverify, assert_no_secrets):
    """invalid_grant: that artist's orders untouched, one /token call per run, one deduplicated reconnect
    alert; another artist's order in the same run still completes."""
    artist = seed.artist("Revoked Artist", oauth=True, token_expires_in=timedelta(minutes=-5))
    event, standing = shop(seed, artist)
    mine = [seed.order([(standing, 1)], event_id=event), seed.order([(standing, 2)], event_id=event)]
    other = seed.artist("Platform Artist")
    other_event, other_standing = shop(seed, other)
    theirs = seed.order([(other_standing, 2)], event_id=other_event)
    sumup.revoke_refresh_token(artist.refresh_token)
    before = artist_tokens(db, artist.id)

    first = run_payverify("sweep")

    assert first.returncode == ExitStatus.OK, first.stderr
    assert sumup.token_calls == 1  # the second order of the artist did not try /token again
    for order in mine:
        assert order_row(db, order.id)["status"] == "pending_verification"
        assert tickets(db, order.id) == 0
        assert sumup.get_count(order.checkout_id) == 0
    assert count(db, "SELECT count(*) FROM payverify_outbox WHERE order_id IS NOT NULL "
                     f"AND order_id IN ({mine[0].id}, {mine[1].id})") == 0
    assert artist_tokens(db, artist.id) == before
    assert count(db, f"SELECT count(*) FROM payverify_outbox WHERE kind = '{RECONNECT}'") == 1
    assert count(db, f"SELECT (context->'artist'->>'id')::bigint FROM payverify_outbox "
                     f"WHERE kind = '{RECONNECT}'") == artist.id
    assert order_row(db, theirs.id)["status"] == "completed"
    assert tickets(db, theirs.id) == 2

    second = run_payverify("sweep")

    assert second.returncode == ExitStatus.OK, second.stderr
    assert count(db, f"SELECT count(*) FROM payverify_outbox WHERE kind = '{RECONNECT}'") == 1
    for order in mine:
        assert order_row(db, order.id)["status"] == "pending_verification"
        assert tickets(db, order.id) == 0
    assert_no_secrets(first, second, artists=[artist])


def test_reconnect_alert_rearmed_once_credentials_work_again(seed, db, sumup, run_payverify):
    """One alert per artist until it works again: after the artist reconnects and a request succeeds,
    a later revocation alerts staff again (a second row), instead of being silenced forever."""
    artist = seed.artist(oauth=True, token_expires_in=timedelta(minutes=-5))
    event, standing = shop(seed, artist)
    seed.order([(standing, 1)], event_id=event)
    sumup.revoke_refresh_token(artist.refresh_token)
    assert run_payverify("sweep").returncode == ExitStatus.OK
    assert count(db, f"SELECT count(*) FROM payverify_outbox WHERE kind = '{RECONNECT}'") == 1

    # The artist reconnects on the site: new tokens in their row, known to SumUp.
    sumup.add_access_token("at_reconnected", artist.merchant_code)
    sumup.add_refresh_token("rt_reconnected", artist.merchant_code)
    with db.transaction() as tx:
        tx.fetch_sql("UPDATE artists_artist SET sumup_access_token = 'at_reconnected', "
                     "sumup_refresh_token = 'rt_reconnected', sumup_token_expires_at = now() + interval '1 hour' "
                     "WHERE id = %(id)s RETURNING id", {"id": artist.id})
    assert run_payverify("sweep").returncode == ExitStatus.OK
    assert count(db, "SELECT count(*) FROM orders_order WHERE status = 'completed'") == 1
    assert count(db, f"SELECT count(*) FROM payverify_outbox WHERE kind = '{RECONNECT}'") == 1

    # Revoked again later: a new alert.
    seed.order([(standing, 1)], event_id=event)
    sumup.expire_access_token("at_reconnected")
    sumup.revoke_refresh_token("rt_reconnected")
    assert run_payverify("sweep").returncode == ExitStatus.OK
    assert count(db, f"SELECT count(*) FROM payverify_outbox WHERE kind = '{RECONNECT}'") == 2


def test_token_endpoint_down_changes_nothing(seed, db, sumup, run_payverify, assert_no_secrets):
    """/token answering 503: the artist's order and tokens stay as they were and the run exits 0."""
    artist = seed.artist(oauth=True, token_expires_in=timedelta(minutes=-5))
    event, standing = shop(seed, artist)
    order = seed.order([(standing, 1)], event_id=event)
    # A platform-key order answered normally: the run is not "SumUp answered nothing" (exit 7).
    other = seed.artist("Platform Artist")
    other_event, other_standing = shop(seed, other)
    theirs = seed.order([(other_standing, 1)], event_id=other_event)
    sumup.script_token(*[Scripted(status=503)] * 10)
    before = artist_tokens(db, artist.id)

    result = run_payverify("sweep")

    assert result.returncode == ExitStatus.OK, result.stderr
    assert sumup.token_calls >= 1
    assert order_row(db, order.id)["status"] == "pending_verification"
    assert tickets(db, order.id) == 0
    assert count(db, f"SELECT count(*) FROM payverify_audit WHERE order_id = {order.id} "
                     "AND outcome = 'unchanged'") == 1
    assert artist_tokens(db, artist.id) == before
    assert sumup.current_refresh_token(artist.merchant_code) == artist.refresh_token
    assert count(db, f"SELECT count(*) FROM payverify_outbox WHERE kind = '{RECONNECT}'") == 0
    assert order_row(db, theirs.id)["status"] == "completed"
    assert_no_secrets(result, artists=[artist])


def test_concurrent_sweeps_refresh_a_rotating_token_once(seed, db, sumup, env, assert_no_secrets):
    """Four overlapping sweeps over one artist's expired token: one /token call, the rotated refresh token
    stored, no reconnect alert, and every order completed with exactly its tickets."""
    artist = seed.artist(oauth=True, token_expires_in=timedelta(minutes=-5), register_access_token=False)
    assert sumup.rotate_refresh_tokens  # reusing the old refresh token would answer invalid_grant
    event, standing = shop(seed, artist)
    orders = [seed.order([(standing, 1 + i % 3)], event_id=event) for i in range(40)]
    # The first /token reply takes 1 s, so the other runs reach the artist's lock while it is held.
    sumup.script_token(Scripted(delay=1.0))
    sumup.latency = 0.02  # spread the orders over all four runs

    procs = [subprocess.Popen([sys.executable, "-m", "payverify", "sweep"], env=dict(env), cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))

    assert [r.returncode for r in results] == [ExitStatus.OK] * 4, [r.stderr for r in results]
    assert sumup.token_calls == 1
    assert all(r.status == 200 for r in sumup.requests if r.checkout_id)  # nobody used a stale token
    assert count(db, "SELECT count(DISTINCT run_id) FROM payverify_audit") >= 2  # the runs did overlap
    assert count(db, f"SELECT count(*) FROM payverify_outbox WHERE kind = '{RECONNECT}'") == 0
    stored = artist_tokens(db, artist.id)["refresh"]
    assert stored == sumup.current_refresh_token(artist.merchant_code) != artist.refresh_token
    for order in orders:
        assert order_row(db, order.id)["status"] == "completed"
        assert tickets(db, order.id) == order.admissions
    assert count(db, "SELECT count(*) FROM tickets_ticket") == sum(o.admissions for o in orders)
    assert count(db, "SELECT count(*) FROM payverify_fulfilment") == 40
    assert_no_secrets(*results, artists=[artist])


def test_a_burst_of_401s_refreshes_once_and_every_order_is_retried_with_the_new_token(seed, db, sumup,
                                                                                      run_payverify):
    """SumUp refuses the stored token (the DB thinks it fresh) for eight orders asked at once: one
    refresh, under the artist's lock; the workers that got their 401 while it was in flight wait for
    the lock and retry with the new token, instead of reporting the artist to staff."""
    artist = seed.artist(oauth=True, token_expires_in=timedelta(hours=1), register_access_token=False)
    event, standing = shop(seed, artist)
    orders = [seed.order([(standing, 1)], event_id=event) for _ in range(8)]
    sumup.script_token(Scripted(delay=1.0))  # the refresh is in flight while the other 401s arrive

    result = run_payverify("sweep", extra_env={"PAYVERIFY_CONCURRENCY": "8"})

    assert result.returncode == ExitStatus.OK, result.stderr
    assert sumup.token_calls == 1
    assert count(db, f"SELECT count(*) FROM payverify_outbox WHERE kind = '{RECONNECT}'") == 0
    for order in orders:
        assert checkout_statuses(sumup, order.checkout_id) in ([401, 200], [200])
        assert order_row(db, order.id)["status"] == "completed"
    assert sum(checkout_statuses(sumup, o.checkout_id) == [401, 200] for o in orders) >= 2  # they did overlap


def test_missing_client_credentials_named_in_log(seed, db, sumup, env, run_payverify, assert_no_secrets):
    """Without SUMUP_CLIENT_ID/SECRET an expired token cannot be refreshed: the order stays as it was and
    the log file says SUMUP_CLIENT_ID is needed."""
    artist = seed.artist(oauth=True, token_expires_in=timedelta(minutes=-5))
    event, standing = shop(seed, artist)
    order = seed.order([(standing, 1)], event_id=event)
    del env["SUMUP_CLIENT_ID"], env["SUMUP_CLIENT_SECRET"]  # run_payverify uses this same dict

    result = run_payverify("sweep")

    assert "Traceback" not in result.stderr
    assert sumup.token_calls == 0
    assert order_row(db, order.id)["status"] == "pending_verification"
    assert tickets(db, order.id) == 0
    lines = [json.loads(line) for line in Path(env["PAYVERIFY_LOG_FILE"]).read_text("utf-8").splitlines()]
    assert any("SUMUP_CLIENT_ID" in json.dumps(line) for line in lines)
    # A person must read this one: it is on stderr too (cron mails it), once per artist and run.
    assert result.stderr.count("SUMUP_CLIENT_ID") == 1
    assert_no_secrets(result, artists=[artist])

"""Crashes: real `payverify sweep` processes SIGKILLed at each named fault point (payverify/faults.py)
and at random moments, then one clean run; the invariants (tests/invariants.py) must hold."""

from __future__ import annotations

import os
import random
import signal
import smtplib
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from payverify.mail.outbox import ALERT_RECONNECT
from tests.conftest import DIRECT_AND_THROUGH_PGBOUNCER, ROOT
from tests.helpers import log_has, rows, scalar, status_of, tickets_of
from tests.invariants import assert_invariants, check_invariants
from tests.processes import compose_workers, eventually, wait_held

FAULT_POINTS = ["after_claim", "after_sumup_answer", "before_settle_commit", "after_settle_commit",
                "after_smtp_accept", "before_mark_sent", "after_token_response"]
SMTP_POINTS = {"after_smtp_accept", "before_mark_sent"}
ALERTS = "alerts@coderra.je"


def time_passes(db) -> None:
    """What a crashed run leaves behind lapses: its open transactions (a loaded machine can take a
    moment to end the backend of a killed process, whose open transaction still holds row locks the
    next run would skip; through PgBouncer the pooler ends it, and its idle server connections stay),
    its order leases and its outbox claims."""
    eventually(lambda: not scalar(db, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %(app)s "
                                      "AND state <> 'idle' AND datname = current_database() "
                                      "AND pid <> pg_backend_pid()", app="payverify%"),
               15, "a killed run's database session ended")
    with db.transaction() as tx:
        tx.fetch_sql("UPDATE payverify_order_state SET lease_expires_at = now() - interval '1 second' "
                     "WHERE lease_expires_at IS NOT NULL RETURNING order_id")
        tx.fetch_sql("UPDATE payverify_outbox SET next_attempt_at = now() WHERE status = 'pending' RETURNING id")


def mixed_orders(seed, event, standing, seated):
    """Orders of mixed outcomes; returns (ids SumUp says are paid and match, {name: order})."""
    o = {
        "paid_2": seed.order([(standing, 2)], event_id=event, email="two@example.com", age=timedelta(minutes=10)),
        "paid_1": seed.order([(seated, 1)], event_id=event, email="one@example.com", age=timedelta(minutes=9)),
        "paid_mixed": seed.order([(standing, 1), (seated, 2)], event_id=event, email="mix@example.com",
                                 age=timedelta(minutes=8)),
        "failed_old": seed.order([(standing, 1)], event_id=event, sumup_status="FAILED", email="fail@example.com",
                                 age=timedelta(minutes=45)),
        "pending_young": seed.order([(standing, 1)], event_id=event, sumup_status="PENDING",
                                    email="wait@example.com", age=timedelta(minutes=5)),
        "mismatch": seed.order([(seated, 1)], event_id=event, sumup_amount="1.00", email="odd@example.com",
                               age=timedelta(minutes=7)),
    }
    return {o["paid_2"].id, o["paid_1"].id, o["paid_mixed"].id}, o


def test_the_invariant_checker_catches_every_kind_of_violation(seed, db, smtp, run_payverify):
    """The checker is not vacuous: each corruption of a converged database shows in its report."""
    artist = seed.artist()
    event = seed.event(artist)
    standing, seated = seed.ticket_type(event, "Standing", "12.50"), seed.ticket_type(event, "Seated", "30.00")
    expected_paid, o = mixed_orders(seed, event, standing, seated)
    assert run_payverify("sweep").returncode == 0
    clean = check_invariants(db, smtp, expected_paid=expected_paid)
    assert_invariants(clean)
    assert clean.completed == 3 and clean.messages_captured == 5  # 3 confirmations, 1 failed, 1 alert

    with db.transaction() as tx:
        tx.fetch_sql("DELETE FROM tickets_ticket WHERE id = (SELECT min(id) FROM tickets_ticket "
                     "WHERE order_id = %(id)s) RETURNING id", {"id": o["paid_2"].id})
        tx.fetch_sql("DELETE FROM payverify_fulfilment WHERE order_id = %(id)s RETURNING order_id",
                     {"id": o["paid_1"].id})
        tx.fetch_sql("ALTER TABLE tickets_ticket DROP CONSTRAINT tickets_ticket_code_key; "
                     "INSERT INTO tickets_ticket (order_id, order_item_id, event_id, ticket_type_id, code, "
                     "holder_name, status, created_at) "
                     "SELECT %(to)s, order_item_id, event_id, ticket_type_id, code, holder_name, status, now() "
                     "FROM tickets_ticket "
                     "WHERE order_id = %(from)s LIMIT 1 RETURNING id",
                     {"to": o["mismatch"].id, "from": o["paid_mixed"].id})
        tx.fetch_sql("UPDATE payverify_outbox SET message_id = '<lost@example.com>' WHERE order_id = %(id)s "
                     "AND kind = 'order_confirmation' RETURNING id", {"id": o["paid_mixed"].id})
    first = smtp.messages[0]
    with smtplib.SMTP(smtp.host, smtp.port) as client:
        client.sendmail(first.mail_from, list(first.rcpt_tos), first.data)

    report = check_invariants(db, smtp, expected_paid=expected_paid | {o["pending_young"].id})
    assert report.wrong_ticket_count == {o["paid_2"].id: (1, 2)}
    assert report.wrong_fulfilment == {o["paid_1"].id: 0}
    assert report.tickets_without_completion == {o["mismatch"].id: ("requires_manual_review", 1)}
    assert report.duplicate_ticket_codes == 1
    assert report.paid_not_completed == {o["pending_young"].id: "pending_verification"}
    assert report.completed_not_mailed == [o["paid_mixed"].id]
    assert report.duplicate_mails == 1
    with pytest.raises(AssertionError):
        assert_invariants(report, max_duplicate_mails=1)


@DIRECT_AND_THROUGH_PGBOUNCER
@pytest.mark.parametrize("point", FAULT_POINTS)
def test_sigkill_at_each_fault_point_then_a_clean_run_converges(point, seed, db, smtp, sumup, run_payverify):
    """A SIGKILL at any fault point, then one clean run: right tickets once, paid orders completed and
    mailed, no mail repeated except one copy per kill at the two SMTP points (after_token_response:
    see test_kill_after_token_response_loses_the_rotated_pair_and_staff_are_alerted)."""
    artist = seed.artist()
    event = seed.event(artist)
    standing, seated = seed.ticket_type(event, "Standing", "12.50"), seed.ticket_type(event, "Seated", "30.00")
    expected_paid, orders = mixed_orders(seed, event, standing, seated)
    oauth_order = None
    if point == "after_token_response":
        oauth = seed.artist("Tide Pool", oauth=True, token_expires_in=timedelta(minutes=-5))
        oauth_event = seed.event(oauth, "Low Tide")
        # The oldest, so the one worker takes it first: the kill must not land while another order's
        # confirmation is between the SMTP server's acceptance and its mark (a duplicate by luck).
        oauth_order = seed.order([(seed.ticket_type(oauth_event, "Standing", "15.00"), 2)], event_id=oauth_event,
                                 email="oauth@example.com", age=timedelta(minutes=50))

    killed = run_payverify("sweep", extra_env={"PAYVERIFY_FAULT": point, "PAYVERIFY_CONCURRENCY": "1"})
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)
    time_passes(db)
    clean = run_payverify("sweep")
    assert clean.returncode == 0, clean.stderr

    if oauth_order is not None:
        # The rotated pair died with the process: the order cannot be verified (checked in the test below).
        assert status_of(db, oauth_order.id) == "pending_verification"
    report = check_invariants(db, smtp, expected_paid=expected_paid)
    assert_invariants(report, max_duplicate_mails=1 if point in SMTP_POINTS else 0, log=clean.stderr)
    if point in SMTP_POINTS:
        # The documented window: accepted by the SMTP server, not yet marked sent -> sent again once.
        assert report.duplicate_mails == 1
    assert status_of(db, orders["failed_old"].id) == "failed"
    assert status_of(db, orders["pending_young"].id) == "pending_verification"
    assert status_of(db, orders["mismatch"].id) == "requires_manual_review"
    assert tickets_of(db, orders["mismatch"].id) == 0
    # Every queued message went out (nothing stranded by the kill).
    assert scalar(db, "SELECT count(*) FROM payverify_outbox WHERE status <> 'sent'") == 0


def test_kill_after_token_response_loses_the_rotated_pair_and_staff_are_alerted(seed, db, smtp, sumup,
                                                                                run_payverify):
    """A kill between SumUp's token answer and storing it loses the rotated refresh token: the artist's
    order stays untouched (no tickets, no guess) and staff get one "reconnect SumUp" alert.

    credentials.py refreshes under the artist's row lock and stores the new pair in that same
    transaction; the fault point sits after SumUp answered and before the UPDATE, so SIGKILL rolls the
    transaction back. The simulator rotates refresh tokens (the old one is revoked as soon as the new
    one is issued), so the database is left holding a revoked refresh token: the clean run gets
    invalid_grant, which the design answers with "orders untouched + one reconnect alert". This is the
    recoverable state: the artist reconnects SumUp and the next sweep verifies the order."""
    oauth = seed.artist("Tide Pool", oauth=True, token_expires_in=timedelta(minutes=-5))
    event = seed.event(oauth, "Low Tide")
    order = seed.order([(seed.ticket_type(event, "Standing", "15.00"), 2)], event_id=event, email="oauth@example.com")

    killed = run_payverify("sweep", extra_env={"PAYVERIFY_FAULT": "after_token_response",
                                               "PAYVERIFY_CONCURRENCY": "1"})
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)
    stored = rows(db, "SELECT sumup_refresh_token, sumup_access_token FROM artists_artist WHERE id = %(id)s",
                  id=oauth.id)[0]
    # After the kill: the old pair is still stored, and SumUp has already revoked that refresh token.
    assert stored["sumup_refresh_token"] == oauth.refresh_token
    assert stored["sumup_access_token"] == oauth.access_token
    assert sumup.current_refresh_token(oauth.merchant_code) not in (None, oauth.refresh_token)
    assert len(sumup.refresh_tokens_issued) == 1

    time_passes(db)
    clean = run_payverify("sweep")
    assert clean.returncode == 0, clean.stderr
    assert status_of(db, order.id) == "pending_verification"
    assert tickets_of(db, order.id) == 0
    assert len(sumup.refresh_tokens_issued) == 1  # the revoked token earned nothing new
    alerts = rows(db, "SELECT message_id, status FROM payverify_outbox WHERE kind = %(k)s", k=ALERT_RECONNECT)
    assert [a["status"] for a in alerts] == ["sent"]
    report = check_invariants(db, smtp)
    assert_invariants(report, log=clean.stderr)
    alert_mails = [m for m in smtp.messages if ALERTS in m.rcpt_tos
                   and m.parsed()["Message-ID"].strip() == alerts[0]["message_id"]]
    assert len(alert_mails) == 1


# Reached once per order verified, whatever SumUp said: by every run, at least once for each order
# SumUp keeps calling PENDING (they stay due).
EVERY_VERIFY_POINTS = ("after_claim", "after_sumup_answer", "before_settle_commit", "after_settle_commit")


def test_random_sigkills_during_a_long_run_then_a_clean_run_converges(seed, db, env, smtp, sumup):
    """20 SIGKILLs at random moments of 4-thread sweeps over 200 mixed orders (full size: 500, set
    PAYVERIFY_CRASH_ORDERS), then one clean run: invariants hold, at most one duplicate mail per kill.

    Every other run kills itself at a fault point and arrival drawn at random among those it certainly
    reaches (one of the points every verification passes, within the orders every run verifies): an
    interruption mid-run by construction, the other three threads and the mail workers wherever they
    happen to be. The runs between are killed after a random delay, and count as killed only when the
    kill found them running; one it did not find running must have exited 0."""
    size = int(os.environ.get("PAYVERIFY_CRASH_ORDERS", "200"))
    rng_seed = int(os.environ.get("PAYVERIFY_CRASH_SEED", "20261126"))
    print(f"random seed {rng_seed} (PAYVERIFY_CRASH_SEED), {size} orders")
    rng = random.Random(rng_seed)
    artist = seed.artist()
    event = seed.event(artist)
    standing, seated = seed.ticket_type(event, "Standing", "12.50"), seed.ticket_type(event, "Seated", "30.00")
    expected_paid, unpaid = set(), set()
    for i in range(size):
        kind = i % 10
        if kind == 7:
            unpaid.add(seed.order([(standing, 1)], event_id=event, sumup_status="FAILED",
                                  age=timedelta(minutes=45)).id)
        elif kind == 8:
            unpaid.add(seed.order([(standing, 1)], event_id=event, sumup_status="PENDING").id)
        elif kind == 9:
            unpaid.add(seed.order([(seated, 1)], event_id=event, sumup_amount="1.00").id)
        else:
            items = [(standing, 1 + i % 3)] + ([(seated, 1)] if i % 2 else [])
            expected_paid.add(seed.order(items, event_id=event, email=f"fan{i}@example.com").id)
    sumup.latency = 0.02
    run_env = {**env, "PAYVERIFY_CONCURRENCY": "4"}

    verified_by_every_run = size // 10  # kind 8: SumUp says PENDING, so they stay due
    kills, progress = 0, []  # progress: (orders settled, mails sent) after each run
    for run in range(20):
        at_point = run % 2 == 0
        fault = f"{rng.choice(EVERY_VERIFY_POINTS)}@{rng.randint(1, verified_by_every_run)}" if at_point else ""
        proc = subprocess.Popen([sys.executable, "-m", "payverify", "sweep"],
                                env={**run_env, "PAYVERIFY_FAULT": fault}, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not at_point:
            time.sleep(rng.uniform(0.2, 1.5))
            if proc.poll() is None:  # reaped when it had ended: the pid cannot be another process's
                os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=150)
        if at_point:
            assert proc.returncode == -signal.SIGKILL, f"run {run} ended ({proc.returncode}) before {fault}"
        else:  # a run the kill did not find running ended on its own, cleanly, whatever the kills before left
            assert proc.returncode in (-signal.SIGKILL, 0), f"run {run} ended ({proc.returncode})"
        kills += proc.returncode == -signal.SIGKILL  # a kill that came after the run ended is no kill
        time_passes(db)
        progress.append((scalar(db, "SELECT count(*) FROM orders_order WHERE status <> 'pending_verification'"),
                         scalar(db, "SELECT count(*) FROM payverify_outbox WHERE status = 'sent'")))
    print(f"{kills} runs killed mid-run; (orders settled, mails sent) after each: {progress}")

    clean = subprocess.run([sys.executable, "-m", "payverify", "sweep"], env=run_env, cwd=ROOT,
                           capture_output=True, text=True, timeout=150)
    assert clean.returncode == 0, clean.stderr
    report = check_invariants(db, smtp, expected_paid=expected_paid)
    print(report)
    assert_invariants(report, max_duplicate_mails=kills, log=clean.stderr)
    assert report.completed == len(expected_paid)
    assert scalar(db, "SELECT count(*) FROM payverify_outbox WHERE status <> 'sent'") == 0


def alive(worker: int) -> bool:
    """Not reaped, nor its pid reused. (The workers are found by their parent, tests/processes.py:
    they start without any of payverify's settings in their environment.)"""
    try:
        return b"spawn_main" in Path(f"/proc/{worker}/cmdline").read_bytes()
    except OSError:
        return False


def test_sigkill_while_workers_compose_leaves_no_worker_behind_and_a_clean_run_converges(seed, db, env, smtp,
                                                                                         run_payverify):
    """Killed outright with a compose worker running (a message composed by it, not sent): the worker
    does not outlive the run by more than a moment, and the next run sends every confirmation once."""
    from payverify.mail.compose_pool import BUSY_STREAK

    artist = seed.artist()
    event = seed.event(artist)
    standing = seed.ticket_type(event, "Standing", "12.50")
    orders = [seed.order([(standing, 1)], event_id=event, email=f"fan{i}@example.com")
              for i in range(BUSY_STREAK + 15)]
    assert run_payverify("sweep", extra_env={"PAYVERIFY_SMTP_URL": "smtp://127.0.0.1:1"}).returncode == 0
    with db.transaction() as tx:
        tx.fetch_sql("UPDATE payverify_outbox SET next_attempt_at = now() RETURNING id")
    smtp.hold(BUSY_STREAK, lambda: log_has(env["PAYVERIFY_LOG_FILE"], "mail.compose_pool_ready"))
    # Held where a worker has composed a message not sent yet, then killed outright. One SMTP session:
    # a second sender's message held at DATA would be accepted while the run is stopped (its socket
    # still open), and sent again by the next run, as documented for a crash after the 250.
    run = subprocess.Popen([sys.executable, "-m", "payverify", "sweep"], cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env={**env, "PAYVERIFY_FAULT": "after_worker_composed:stop",
                                                           "PAYVERIFY_SMTP_CONNECTIONS": "1"})
    try:
        wait_held(run, within=120)
        workers = compose_workers(run.pid)
    finally:
        run.kill()
        run.wait(30)
    assert workers, "no compose worker was seen"
    eventually(lambda: not any(alive(w) for w in workers), 15, "the compose workers gone")
    assert [w for w in workers if alive(w)] == []
    time_passes(db)
    clean = run_payverify("sweep")
    assert clean.returncode == 0, clean.stderr
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == sorted(f"fan{i}@example.com" for i in range(len(orders)))
    assert scalar(db, "SELECT count(*) FROM payverify_outbox WHERE status <> 'sent'") == 0

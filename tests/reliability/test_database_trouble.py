"""Database trouble: the connection killed mid-run, a row lock held past the lock timeout.
No partial settle, and the next run converges."""

from __future__ import annotations

import subprocess
import sys
import time

from payverify.db import Database
from tests.conftest import ROOT
from tests.helpers import row_locked, rows, scalar, status_of, tickets_of


def _seed_orders(seed, n: int, quantity: int = 2):
    artist = seed.artist()
    event = seed.event(artist)
    tt = seed.ticket_type(event)
    return [seed.order([(tt, quantity)], event_id=event) for _ in range(n)]


def _state(db: Database, order) -> dict:
    """Everything a settle writes for one order."""
    return rows(db, """
        SELECT o.status,
               (SELECT count(*) FROM tickets_ticket t WHERE t.order_id = o.id) AS tickets,
               (SELECT count(*) FROM payverify_fulfilment f WHERE f.order_id = o.id) AS fulfilment,
               (SELECT count(*) FROM payverify_outbox b WHERE b.order_id = o.id
                                                          AND b.kind = 'order_confirmation') AS confirmations,
               (SELECT count(*) FROM payverify_outbox b WHERE b.order_id = o.id) AS outbox,
               (SELECT count(*) FROM payverify_audit a WHERE a.order_id = o.id
                                                         AND a.outcome = 'completed') AS audited_completed
        FROM orders_order o WHERE o.id = %(id)s""", id=order.id)[0]


def _assert_all_or_nothing(db: Database, orders) -> tuple[int, int]:
    """Each order is either fully settled or untouched; returns (settled, untouched)."""
    settled = untouched = 0
    for order in orders:
        state = _state(db, order)
        if state["status"] == "completed":
            assert state == {"status": "completed", "tickets": order.admissions, "fulfilment": 1,
                             "confirmations": 1, "outbox": 1, "audited_completed": 1}, order
            settled += 1
        else:
            assert state == {"status": "pending_verification", "tickets": 0, "fulfilment": 0,
                             "confirmations": 0, "outbox": 0, "audited_completed": 0}, order
            untouched += 1
    return settled, untouched


def test_connection_terminated_mid_run(seed, db, sumup, env, database_url, run_payverify):
    """pg_terminate_backend on a running sweep: it exits non-zero with one line on stderr and no
    traceback, no order is half settled, and after the leases expire a clean run settles them all."""
    orders = _seed_orders(seed, 60)
    sumup.latency = 0.05
    proc = subprocess.Popen([sys.executable, "-m", "payverify", "sweep"], cwd=ROOT, text=True,
                            env={**env, "PAYVERIFY_CONCURRENCY": "2"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # About 0.5 s into the sweep: wait until it has settled a first order (startup time varies).
        deadline = time.monotonic() + 20
        while scalar(db, "SELECT count(*) FROM orders_order WHERE status = 'completed'") == 0:
            assert time.monotonic() < deadline and proc.poll() is None, "the sweep never got going"
            time.sleep(0.05)
        time.sleep(0.3)
        assert proc.poll() is None, "the sweep finished before it could be interrupted"
        killed = scalar(db, """
            SELECT count(*) FROM (
                SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                WHERE application_name = 'payverify' AND datname = current_database() AND pid <> pg_backend_pid()
            ) AS t""")
        assert killed >= 2  # the run's own connection and at least one worker's
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    _, untouched = _assert_all_or_nothing(db, orders)
    assert untouched > 0, "the run was not interrupted: every order got settled"

    with db.transaction() as tx:
        tx.script("UPDATE payverify_order_state SET lease_expires_at = now() - interval '1 second'")
    sumup.latency = 0.0
    result = run_payverify("sweep")
    assert result.returncode == 0, result.stderr
    assert _assert_all_or_nothing(db, orders) == (len(orders), 0)
    assert scalar(db, "SELECT count(*) FROM tickets_ticket") == sum(o.admissions for o in orders)


def test_row_lock_past_lock_timeout(seed, db, database_url, run_payverify):
    """An order whose row another transaction keeps locked past the lock timeout is audited as an
    error and left as it was; the other orders are settled and the run exits 0; once the lock is
    released a clean run settles it."""
    locked, *others = _seed_orders(seed, 3)
    with row_locked(database_url, locked.id):
        started = time.monotonic()
        result = run_payverify("sweep", extra_env={"PAYVERIFY_DB_LOCK_TIMEOUT_MS": "300",
                                                   "PAYVERIFY_CONCURRENCY": "2"})
        elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert elapsed < 30
    assert _state(db, locked) == {"status": "pending_verification", "tickets": 0, "fulfilment": 0,
                                  "confirmations": 0, "outbox": 0, "audited_completed": 0}
    assert [r["outcome"] for r in rows(db, "SELECT outcome FROM payverify_audit WHERE order_id = %(id)s",
                                       id=locked.id)] == ["error"]
    for order in others:
        assert status_of(db, order.id) == "completed"
        assert tickets_of(db, order.id) == order.admissions

    with db.transaction() as tx:
        tx.script("UPDATE payverify_order_state SET lease_expires_at = now() - interval '1 second'")
    again = run_payverify("sweep")
    assert again.returncode == 0, again.stderr
    assert status_of(db, locked.id) == "completed"
    assert tickets_of(db, locked.id) == locked.admissions
    assert scalar(db, "SELECT count(*) FROM tickets_ticket") == 3 * locked.admissions

"""Years of history cost nothing: what a sweep, `check` and `pending` read of the big tables is bounded
by the work due, not by the orders the site ever took or by payverify's own history.

A row budget, read from Postgres' own counters (pg_stat_user_tables) around real payverify processes
on a database with a history: a query that starts reading history (a sequential scan, or an index
scan through every failed order there ever was) blows the budget at once, whatever plan it takes.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime, timedelta

import pytest

from payverify.db.presence import ALIVE_SECONDS
from payverify.exitcodes import ExitStatus
from payverify_dev.history import add_reconcile_indexes, build_history
from tests.helpers import rows, scalar, status_of

HISTORY = 20_000  # orders, and rows in each of payverify's tables
DUE = 5
BIG = ("orders_order", "orders_orderitem", "tickets_ticket", "payverify_order_state", "payverify_audit",
       "payverify_outbox", "payverify_runs", "payverify_fulfilment")
# Rows a run may read of each big table: a few per due order, per claim and per mail, and the
# handful the metrics and the digest look at. History is 20,000 rows a table: a scan is 40 times this.
BUDGET = 500


@pytest.fixture
def history(db, sumup):
    return build_history(db, orders=HISTORY, payverify_rows=HISTORY, due=DUE, sumup=sumup)


def sessions_gone(db) -> None:
    """A payverify process's statistics reach the shared counters as its sessions end."""
    deadline = time.monotonic() + 15
    while scalar(db, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %(app)s "
                     "AND datname = current_database() AND pid <> pg_backend_pid()", app="payverify%"):
        assert time.monotonic() < deadline, "payverify's sessions never ended"
        time.sleep(0.05)


def rows_read(db) -> dict[str, int]:
    """Rows read so far of each big table, by sequential scans and index fetches."""
    sessions_gone(db)
    with db.transaction() as tx:  # this session's own reads (building the history) are counted first
        tx.fetch_sql("SELECT pg_stat_force_next_flush() IS NULL AS flushed")
    with db.transaction() as tx:
        tx.fetch_sql("SELECT pg_stat_clear_snapshot() IS NULL AS cleared")
        found = tx.fetch_sql("SELECT relname::text AS t, coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) AS n "
                             "FROM pg_stat_user_tables WHERE relname = ANY(%(t)s)", {"t": list(BIG)})
    return {r["t"]: int(r["n"]) for r in found}


def read_by(db, run) -> dict[str, int]:
    """What `run()` (payverify processes) read of each big table beyond the budget, with the counts."""
    before = rows_read(db)
    run()
    after = rows_read(db)
    return {t: after[t] - before.get(t, 0) for t in after if after[t] - before.get(t, 0) > BUDGET}


def test_a_sweep_settling_the_due_orders_reads_them_not_the_history(db, history, run_payverify):
    statuses_before = rows(db, "SELECT status, count(*) AS n FROM orders_order GROUP BY status ORDER BY status")

    def sweep():
        result = run_payverify("sweep")
        assert result.returncode == ExitStatus.OK, result.stderr

    assert read_by(db, sweep) == {}
    assert [status_of(db, o.id) for o in history.due] == ["completed"] * DUE
    # The due orders went from pending_verification to completed, and nothing historical changed.
    expected = {r["status"]: r["n"] for r in statuses_before}
    expected["completed"] += DUE
    expected["pending_verification"] -= DUE
    after = {r["status"]: r["n"] for r in rows(db, "SELECT status, count(*) AS n FROM orders_order GROUP BY status")}
    assert after == {status: n for status, n in expected.items() if n}
    # An idle sweep, the metrics file, `check` (of a due order and of a historical one) and `pending`.
    assert read_by(db, lambda: run_payverify("sweep")) == {}
    old = scalar(db, "SELECT order_number FROM orders_order WHERE status = 'failed' ORDER BY id LIMIT 1")
    assert read_by(db, lambda: [run_payverify("check", n) for n in (history.due[0].order_number, old)]) == {}
    assert read_by(db, lambda: run_payverify("pending", "--json")) == {}


def test_a_scan_of_the_history_does_blow_the_budget(db, history, run_payverify):
    """The budget is not vacuous: without the site's status index the due-order query must read the
    whole of orders_order, and the budget says so (while the sweep itself still works)."""
    with db.transaction() as tx:
        tx.script("DROP INDEX orders_order_status_445594e5; DROP INDEX orders_order_status_445594e5_like")

    def sweep():
        assert run_payverify("sweep").returncode == ExitStatus.OK

    over = read_by(db, sweep)
    assert over.get("orders_order", 0) >= HISTORY
    assert [status_of(db, o.id) for o in history.due] == ["completed"] * DUE


def test_a_watch_poll_reads_the_returning_orders_not_the_history(db, history, run_database_url):
    """The query `payverify watch` runs every second, as the run role."""
    from payverify.db import Database
    from payverify.secret import Secret

    def poll():
        with Database.connect(Secret(run_database_url)) as watcher, watcher.transaction() as tx:
            found = tx.all("watch_new_orders", exclude=[], limit=100, fast_seconds=60, alive_seconds=ALIVE_SECONDS)
        assert {r["id"] for r in found} == {o.id for o in history.due}

    assert read_by(db, poll) == {}



def test_reconcile_reads_its_window_once_the_site_has_the_indexes_doctor_names(db, history, sumup, run_payverify):
    """reconcile looks orders up by transaction code and by when they were paid. Without the site's
    indexes on those (a standard Django site has neither) each account costs all of its orders; with
    the two `doctor` names, a run reads what its window holds. Each account's history has payments no
    order names, so every lookup runs: by code, the account's completed orders, the likely owner."""
    accounts = rows(db, "SELECT sumup_merchant_code AS code, sumup_access_token AS token FROM artists_artist "
                        "WHERE sumup_access_token IS NOT NULL ORDER BY id")
    assert len(accounts) >= 2
    for account in accounts:
        sumup.add_access_token(account["token"], account["code"])

    def reconcile():
        # For two accounts, a payment no order names, just older than the rescue window (so reported)
        # and changed since the account's cursor (so in this run's window, and in the next one's: the
        # cursor trails by the rescue window); for the first, one from two years ago changed today too.
        # Looking for a payment's owner reads the orders of the day before it (found by bisecting the
        # primary key, not by walking back through the years since): a few dozen rows each.
        added = set()
        for account, age in [(accounts[0], timedelta(hours=25)), (accounts[1], timedelta(hours=25)),
                             (accounts[0], timedelta(days=730))]:
            code = f"TX{secrets.token_hex(5).upper()}"
            sumup.add_transaction(account["code"], transaction_code=code, amount="22.50",
                                  timestamp=datetime.now(UTC) - age)
            sumup.update_transaction(account["code"], code, status="SUCCESSFUL")
            added.add(code)
        result = run_payverify("reconcile", "--json")
        assert result.returncode == ExitStatus.OK, result.stderr
        found = json.loads(result.stdout)["discrepancies"]
        # (The history's few late-paid orders, of the last day, are in the window too: SumUp here has no
        # payment of theirs, so they come out as completed without payment.)
        assert added <= {d["transaction_code"] for d in found if d["kind"] == "paid_without_completed_order"}

    assert read_by(db, reconcile).get("orders_order", 0) >= HISTORY // 10  # the accounts' orders, and more
    add_reconcile_indexes(db)
    assert read_by(db, reconcile) == {}

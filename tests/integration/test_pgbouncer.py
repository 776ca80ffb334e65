"""payverify's commands through a real PgBouncer in transaction pooling with a stock pgbouncer.ini
(tests/pgbouncer.py): `db upgrade`, `doctor`, `check` and `reconcile` once each, and a lock timeout
that still fires although no startup option can carry it. The decision table, overlap, crash and watch
tests also run through it (their modules' `THROUGH_PGBOUNCER` tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal

from payverify.db import Database
from payverify.exitcodes import ExitStatus
from payverify.secret import Secret
from payverify_dev.seed import PLATFORM_MERCHANT, load_site_schema
from tests.conftest import ROOT, THROUGH_PGBOUNCER
from tests.helpers import row_locked, rows, scalar, status_of, tickets_of

# The lock timeout under test, and a statement timeout far above it: an order still waiting for its
# row after the lock timeout means the setting never reached the server connection.
LOCK_TIMEOUT_MS = 500
STATEMENT_TIMEOUT_MS = 120_000


def test_db_upgrade_through_pgbouncer(pgbouncer, empty_database_url, tmp_path):
    """The owner's `payverify db upgrade` through the pooler makes payverify's tables; a second one is a
    no-op."""
    with Database.connect(Secret(empty_database_url)) as db:
        load_site_schema(db)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAYVERIFY_", "SUMUP_"))}
    env.update({"PAYVERIFY_DATABASE_URL": pgbouncer.url(empty_database_url),
                "PAYVERIFY_LOG_FILE": str(tmp_path / "upgrade.log")})
    for _ in range(2):
        result = subprocess.run([sys.executable, "-m", "payverify", "db", "upgrade"], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == ExitStatus.OK, result.stderr
    with Database.connect(Secret(empty_database_url)) as db:
        assert scalar(db, "SELECT count(*) FROM pg_tables WHERE tablename = 'payverify_audit'") == 1


@THROUGH_PGBOUNCER
def test_doctor_through_pgbouncer(seed, run_payverify):
    seed.artist("Oauth Olive", oauth=True)
    result = run_payverify("doctor")
    assert result.returncode == ExitStatus.OK, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    pooler = [line for line in result.stdout.splitlines() if "database pooler" in line]
    assert len(pooler) == 1 and pooler[0].split()[0] == "ok", result.stdout
    assert "behind a connection pooler" in pooler[0], pooler


@THROUGH_PGBOUNCER
def test_check_through_pgbouncer(seed, shop, db, smtp, run_payverify):
    event, ticket_type = shop
    order = seed.order([(ticket_type, 2)], event_id=event, email="pooled@example.com")
    result = run_payverify("check", order.order_number)
    assert result.returncode == ExitStatus.OK, result.stderr
    assert status_of(db, order.id) == "completed"
    assert tickets_of(db, order.id) == 2
    assert any("pooled@example.com" in m.rcpt_tos for m in smtp.messages)


@THROUGH_PGBOUNCER
def test_reconcile_through_pgbouncer(seed, shop, db, sumup, run_payverify):
    """A refund after completion, found through the pooler."""
    event, ticket_type = shop
    order = seed.order([(ticket_type, 1)], event_id=event, age=timedelta(minutes=10))
    assert run_payverify("sweep").returncode == ExitStatus.OK
    code = rows(db, "SELECT sumup_transaction_code FROM orders_order WHERE id = %(id)s",
                id=order.id)[0]["sumup_transaction_code"]
    sumup.update_transaction(PLATFORM_MERCHANT, code, status="REFUNDED", refunded_amount=Decimal("12.50"))
    result = run_payverify("reconcile", "--json")
    assert result.returncode == ExitStatus.OK, result.stderr
    kinds = [d["kind"] for d in json.loads(result.stdout)["discrepancies"]]
    assert kinds == ["refunded_after_completion"]


@THROUGH_PGBOUNCER
def test_lock_timeout_fires_through_pgbouncer(seed, shop, db, database_url, run_payverify):
    """A direct transaction keeps an order's row locked; a sweep through the pooler gives up on that order
    after PAYVERIFY_DB_LOCK_TIMEOUT_MS (audited as an error, left as it was), settles the others and exits
    0 long before its statement timeout."""
    event, ticket_type = shop
    locked, other = (seed.order([(ticket_type, 1)], event_id=event) for _ in range(2))
    with row_locked(database_url, locked.id):
        started = time.monotonic()
        result = run_payverify("sweep", timeout=STATEMENT_TIMEOUT_MS / 1000 + 60, extra_env={
            "PAYVERIFY_DB_LOCK_TIMEOUT_MS": str(LOCK_TIMEOUT_MS),
            "PAYVERIFY_DB_STATEMENT_TIMEOUT_MS": str(STATEMENT_TIMEOUT_MS)})
        elapsed = time.monotonic() - started
    assert result.returncode == ExitStatus.OK, result.stderr
    assert "Traceback" not in result.stderr
    # Generous for a loaded machine, and still far below the statement timeout.
    assert elapsed < 45, f"the sweep took {elapsed:.0f} s: the lock timeout did not hold through the pooler"
    audited = rows(db, "SELECT outcome, reason FROM payverify_audit WHERE order_id = %(id)s", id=locked.id)
    assert [a["outcome"] for a in audited] == ["error"], audited
    assert "lock timeout" in audited[0]["reason"], audited
    assert status_of(db, locked.id) == "pending_verification" and tickets_of(db, locked.id) == 0
    assert status_of(db, other.id) == "completed"

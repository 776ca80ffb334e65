"""The named queries (payverify/db/queries.sql) that read the tables history makes big, with the
parameters payverify gives them, grouped by the command that runs them: for scale.py's query timings
and its --explain. Only what reads orders_order, tickets_ticket or a payverify table that grows: the
contract check's catalog reads and single-row writes by key are left out.

Everything runs in a transaction that is rolled back, so the few that write (a claim, a guarded
update, a prune batch as a dry run) change nothing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from payverify.config import Policy
from payverify.db import Database
from payverify.db.presence import ALIVE_SECONDS
from payverify.mail.kinds import ALERT_STUCK, CONFIRMATION
from payverify.mail.sender import CLAIM_LEASE_SECONDS, GIVE_UP_HOURS
from payverify.modes.payment_owner import OWNER_CANDIDATES
from payverify.modes.retention import BATCH_SIZE as PRUNE_BATCH
from payverify.modes.retention import HELD_KINDS
from payverify.modes.sweep import BATCH_SIZE as DUE_BATCH
from payverify.modes.sweep import RESCUE_RECHECK_MINUTES
from payverify.monitoring.metrics import TIME_TO_TICKET_BUCKETS, TIME_TO_TICKET_WINDOW_MINUTES
from payverify.orders.stuck_digest import DIGEST_EVERY_MINUTES, MAX_LISTED
from payverify.secret import Secret

POLICY = Policy()
EPOCH = datetime(1, 1, 1, tzinfo=UTC)  # before every row: a pass's first batch


@dataclass(frozen=True)
class Context:
    now: datetime
    host: str
    order_id: int  # an order to look at (a due one, or a historical one)
    order_number: str
    merchant_code: str | None  # an OAuth artist's account (reconcile reads those)
    transaction_codes: list[str]  # a history page's worth of that account's payments


Params = Callable[[Context], dict[str, Any]]

SWEEP: dict[str, Params] = {
    "select_due_orders": lambda c: {
        "rescue_since": c.now - timedelta(hours=POLICY.rescue_hours),
        "rescue_checked_before": c.now - timedelta(minutes=RESCUE_RECHECK_MINUTES),
        "aging": True, "run_started": c.now, "recheck_seconds": 0, "exclude": [], "limit": DUE_BATCH,
        "owner": f"{c.host}:1:bench", "alive_seconds": ALIVE_SECONDS},
    "stuck_orders": lambda c: {"minutes": POLICY.stuck_minutes, "limit": MAX_LISTED},
    "recent_alert_of_kind": lambda c: {"kind": ALERT_STUCK, "minutes": DIGEST_EVERY_MINUTES},
    "claim_outbox_row": lambda c: {"lease_seconds": CLAIM_LEASE_SECONDS, "give_up_hours": GIVE_UP_HOURS,
                                   "fresh_since": None, "order_id": None, "owner": f"{c.host}:1:bench",
                                   "alive_seconds": ALIVE_SECONDS, "left_behind": []},
    "outbox_backlog": lambda c: {},
    "metrics_runs_by_exit_status": lambda c: {"host": c.host, "command": "sweep"},
    "metrics_last_run": lambda c: {"host": c.host, "command": "sweep"},
    "metrics_last_success": lambda c: {"host": c.host, "command": "sweep"},
    "metrics_oldest_due_order": lambda c: {},
    "metrics_payment_to_mail": lambda c: {"kind": CONFIRMATION},
    "metrics_time_to_ticket": lambda c: {"kind": CONFIRMATION, "bounds": list(TIME_TO_TICKET_BUCKETS),
                                         "window_minutes": TIME_TO_TICKET_WINDOW_MINUTES},
    "reconcile_reported_by_kind": lambda c: {},
    "metrics_last_reconcile": lambda c: {},
}
# What verifying and settling one order reads (the guarded update as the sweep issues it: it finds
# the order and, rolled back, changes nothing).
PER_ORDER: dict[str, Params] = {
    "load_order": lambda c: {"order_id": c.order_id},
    "load_order_items": lambda c: {"order_id": c.order_id},
    "settle_order": lambda c: {"order_id": c.order_id, "new_status": "completed", "paid": True,
                               "transaction_code": "T000000000", "seen_status": "pending_verification",
                               "seen_checkout_id": "x"},
    "order_tickets": lambda c: {"order_id": c.order_id},
}
PENDING: dict[str, Params] = {
    "pending_orders": lambda c: {"stuck": False, "stuck_minutes": POLICY.stuck_minutes,
                                 "rescue_hours": POLICY.rescue_hours, "limit": 500},
}
CHECK: dict[str, Params] = {
    "find_order_id_by_number": lambda c: {"order_number": c.order_number},
    "load_order": lambda c: {"order_id": c.order_id},
    "load_order_items": lambda c: {"order_id": c.order_id},
    "recent_audit": lambda c: {"order_id": c.order_id, "limit": 10},
    "order_outbox": lambda c: {"order_id": c.order_id},
}
WATCH: dict[str, Params] = {
    "watch_new_orders": lambda c: {"exclude": [], "limit": 500, "fast_seconds": 60, "alive_seconds": ALIVE_SECONDS},
}
# Once an hour, in a sweep: one batch of each table, from the start, as retention's pass begins.
RETENTION: dict[str, Params] = {
    name: (lambda c: {"cutoff": c.now - timedelta(days=90), "after_at": EPOCH, "after_id": 0, "batch": PRUNE_BATCH,
                      "dry_run": True, "held_kinds": list(HELD_KINDS)})
    for name in ("prune_audit_batch", "prune_outbox_batch", "prune_runs_batch")
}
# `payverify reconcile` (daily), for one merchant account of an OAuth artist: a page of the history's
# codes, the account's completed orders since its cursor (a day back), the owner of an unmatched payment
# (an old one, as `reconcile --since` meets: its day of orders is found wherever it is in the history).
RECONCILE: dict[str, Params] = {
    "reconcile_orders_by_code": lambda c: {"codes": c.transaction_codes, "merchant_code": c.merchant_code},
    "reconcile_completed_since": lambda c: {"since": c.now - timedelta(days=1), "merchant_code": c.merchant_code},
    "reconcile_open_orders_near": lambda c: {"amount": Decimal("22.50"), "currency": "GBP",
                                             "merchant_code": c.merchant_code, "paid_at": c.now - timedelta(days=400),
                                             "limit": OWNER_CANDIDATES},
}
COMMANDS = {"sweep": SWEEP, "sweep, per order": PER_ORDER, "pending": PENDING, "check": CHECK, "watch": WATCH,
            "retention (hourly)": RETENTION, "reconcile (daily)": RECONCILE}


def context(url: str, host: str, order_number: str) -> Context:
    with Database.connect(Secret(url)) as db, db.transaction() as tx:
        row = tx.fetch_sql("SELECT now() AS now, id FROM orders_order WHERE order_number = %(n)s",
                           {"n": order_number})[0]
        account = tx.fetch_sql("SELECT sumup_merchant_code AS code FROM artists_artist "
                               "WHERE sumup_access_token IS NOT NULL ORDER BY id LIMIT 1")
        code = account[0]["code"] if account else None
        codes = tx.fetch_sql("""
            SELECT o.sumup_transaction_code AS code FROM orders_order o
            JOIN events_event e ON e.id = o.event_id JOIN artists_artist a ON a.id = e.artist_id
            WHERE a.sumup_merchant_code = %(m)s AND o.sumup_transaction_code IS NOT NULL
            ORDER BY o.id DESC LIMIT 100""", {"m": code})
    return Context(now=row["now"], host=host, order_id=row["id"], order_number=order_number, merchant_code=code,
                   transaction_codes=[r["code"] for r in codes])


def timed(url: str, ctx: Context, names: dict[str, Params], *, repeat: int) -> float:
    """Median seconds of running these queries one after the other, each in its own transaction as
    payverify runs them (round trips included), rolled back."""
    times = []
    with Database.connect(Secret(url)) as db:
        for _ in range(repeat):
            started = time.perf_counter()
            for name, params in names.items():
                _rolled_back(db, lambda tx, name=name, params=params: tx.run(name, **params(ctx)))
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def explain(url: str, ctx: Context, name: str, params: Params) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of one named query, rolled back."""
    from payverify.db.queries import queries

    sql = "EXPLAIN (ANALYZE, BUFFERS) " + queries()[name]
    with Database.connect(Secret(url)) as db:
        rows: list[dict[str, Any]] = []
        _rolled_back(db, lambda tx: rows.extend(tx.fetch_sql(sql, params(ctx))))
    return [r["QUERY PLAN"] for r in rows]


class _Rollback(Exception):
    pass


def _rolled_back(db: Database, work: Callable[[Any], object]) -> None:
    try:
        with db.transaction() as tx:
            work(tx)
            raise _Rollback
    except _Rollback:
        pass

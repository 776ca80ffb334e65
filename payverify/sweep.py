"""One sweep: select due orders (no lock), claim each with a lease, verify it, settle it.

The lease (payverify_order_state, FOR UPDATE SKIP LOCKED) keeps overlapping runs and hosts from
asking SumUp about the same order at once; correctness does not depend on it (see settle.py).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from payverify import faults
from payverify.config import Settings
from payverify.db import Database
from payverify.decision import widen_rescue
from payverify.errors import DatabaseError, DatabaseUnavailable, PayverifyError
from payverify.monitoring import sumup_error_kind
from payverify.settle import Attempt, record_error
from payverify.sumup.client import SumUpClient
from payverify.verify import Result, Verifier

log = structlog.get_logger("payverify.sweep")


@dataclass
class SweepReport:
    run_id: str
    dry_run: bool
    deadline: float = 0.0  # time.monotonic() after which no new work starts
    due: int = 0
    verified: int = 0
    claimed_elsewhere: int = 0
    errors: int = 0
    sumup_unreachable: int = 0
    outcomes: Counter = field(default_factory=Counter)
    sumup_errors: Counter = field(default_factory=Counter)  # by kind, for the metrics
    stopped_early: str | None = None
    results: list[Result] = field(default_factory=list)

    @property
    def sumup_down(self) -> bool:
        """Every order asked got no reply from SumUp at all: the run could not do its job."""
        return self.verified > 0 and self.sumup_unreachable == self.verified


def sweep(settings: Settings, db: Database, client: SumUpClient, attempt: Attempt, *,
          since: datetime | None = None, limit: int | None = None, dry_run: bool = False,
          keep_results: bool = False, progress: Callable[[int, int], None] | None = None) -> SweepReport:
    """Verify due orders until done, the limit or the time budget. `progress(done, due)` after each."""
    deadline = time.monotonic() + settings.time_budget_seconds
    report = SweepReport(run_id=attempt.run_id, dry_run=dry_run, deadline=deadline)
    with db.transaction() as tx:
        now = tx.one("now")["now"]
    policy = widen_rescue(settings.policy, since, now)
    recheck = now if since else now - timedelta(minutes=policy.rescue_recheck_minutes)
    with db.transaction() as tx:
        due = tx.all("select_due_orders", rescue_since=now - timedelta(hours=policy.rescue_hours),
                     rescue_checked_before=recheck, limit=limit or settings.max_orders_per_run)
    report.due = len(due)
    log.info("sweep.start", run_id=attempt.run_id, due=len(due), dry_run=dry_run,
             since=since.isoformat() if since else None)
    verifier = Verifier(settings, db, client, attempt, policy=policy, dry_run=dry_run)
    for done, row in enumerate(due, start=1):
        if progress is not None:
            progress(done - 1, len(due))
        if time.monotonic() > deadline:
            report.stopped_early = "time budget spent"
            break
        if not dry_run and not _claim(db, attempt, row, settings.lease_seconds):
            report.claimed_elsewhere += 1
            continue
        try:
            result = verifier.verify(row["id"])
        except DatabaseUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - one order's trouble must not stop the run
            report.errors += 1
            log.error("order.error", run_id=attempt.run_id, order_id=row["id"], error=describe(exc),
                      exc_info=True)
            _record_error(db, attempt, row["id"], exc)
            continue
        report.verified += 1
        report.outcomes[result.outcome] += 1
        report.sumup_unreachable += result.answer.transport_failure
        if kind := sumup_error_kind(result.answer):
            report.sumup_errors[kind] += 1
        if keep_results:
            report.results.append(result)
    log.info("sweep.end", run_id=attempt.run_id, due=report.due, verified=report.verified,
             claimed_elsewhere=report.claimed_elsewhere, errors=report.errors,
             outcomes=dict(report.outcomes), stopped_early=report.stopped_early)
    return report


def _claim(db: Database, attempt: Attempt, row: dict, lease_seconds: int) -> bool:
    with db.transaction() as tx:
        tx.run("ensure_order_state", order_id=row["id"])
        claimed = tx.one("claim_order", order_id=row["id"], owner=attempt.lease_owner,
                         lease_seconds=lease_seconds, seen_last_checked_at=row["last_checked_at"])
    if claimed:
        faults.point("after_claim")
    return claimed is not None


def describe(exc: Exception) -> str:
    """Safe to store and show: our own errors carry vetted messages; others only their type."""
    return str(exc) if isinstance(exc, PayverifyError) else f"unexpected {type(exc).__name__}"


def _record_error(db: Database, attempt: Attempt, order_id: int, exc: Exception) -> None:
    """Audit the failed attempt and move the order back in the queue (it is retried next run)."""
    try:
        with db.transaction() as tx:
            record_error(tx, attempt, order_id, describe(exc))
    except DatabaseError:
        pass  # the lease expires by itself

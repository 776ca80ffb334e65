"""Retention: payverify's own rows older than PAYVERIFY_RETENTION_DAYS are deleted, in small batches.

What goes: audit rows, run rows, mail that is done (sent or cancelled), and the rows of processes
that died (payverify_processes, not seen for a day: db/presence.py). What stays however old:
failed and pending mail; every row of an order still awaiting verification or a person (the orders
`payverify pending` lists: pending with a checkout, pending_verification, requires_manual_review, or
erroring run after run); a reconnect alert whose key still holds back the next one; per host and
command the latest finished run and the latest successful one (the metrics read them). Deleted runs
stay counted in payverify_run_counts, so the metrics' counters never go down. No site table is
written; orders_order is only read.

Each batch is one DELETE of at most BATCH_SIZE rows in its own short transaction, walking an index
from where the previous batch stopped: no long lock, no huge transaction, no re-reading of what was
kept. A cron run (and watch's housekeeping) prunes at most once an hour across all hosts, for at
most PASS_SECONDS; whatever is left goes the next hour. `payverify db prune` runs to the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from payverify.config import Settings
from payverify.db import Database
from payverify.db.presence import SILENT_HOURS
from payverify.errors import DatabaseError
from payverify.mail.kinds import ALERT_RECONNECT

log = structlog.get_logger("payverify.modes.retention")

TASK = "retention"
EVERY_SECONDS = 3600
BATCH_SIZE = 1000
# A sweep's pass stops starting batches after this: a huge backlog never holds a run up for long.
PASS_SECONDS = 10.0
# Alerts whose de-duplication key stays set while their condition lasts (re-armed when it ends).
HELD_KINDS = (ALERT_RECONNECT,)
# (table, its batch query), in the order reported.
TABLES = (("payverify_audit", "prune_audit_batch"), ("payverify_outbox", "prune_outbox_batch"),
          ("payverify_runs", "prune_runs_batch"))
_START = (datetime(1, 1, 1, tzinfo=UTC), 0)  # before every row


@dataclass
class PruneReport:
    days: int
    cutoff: datetime
    dry_run: bool
    removed: dict[str, int] = field(default_factory=lambda: {name: 0 for name, _ in TABLES})  # dry run: would be
    batches: int = 0
    complete: bool = True  # False: the time bound stopped it, the rest goes next time


def prune(db: Database, *, days: int, dry_run: bool = False, batch_size: int = BATCH_SIZE,
          seconds: float | None = None, run_id: str | None = None) -> PruneReport:
    """Delete (dry run: count) the rows retention may delete that are older than `days`, a batch of
    each table in turn, until none is left or `seconds` have passed."""
    started = time.monotonic()
    with db.transaction() as tx:
        cutoff = tx.require_one("retention_cutoff", days=days)["cutoff"]
    report = PruneReport(days=days, cutoff=cutoff, dry_run=dry_run)
    after = {name: _START for name, _ in TABLES}
    left = list(TABLES)
    while left:
        for name, query in list(left):
            if seconds is not None and time.monotonic() - started >= seconds:
                report.complete = False
                left = []
                break
            with db.transaction() as tx:
                row = tx.require_one(query, cutoff=cutoff, after_at=after[name][0], after_id=after[name][1],
                                     batch=batch_size, dry_run=dry_run, held_kinds=list(HELD_KINDS))
            report.batches += 1
            report.removed[name] += row["eligible"] if dry_run else row["deleted"]
            if row["examined"] < batch_size:
                left.remove((name, query))
            else:
                after[name] = (row["last_at"], row["last_id"])
    with db.transaction() as tx:  # a handful of rows: the processes that died more than a day ago
        processes = tx.run("prune_silent_processes", hours=SILENT_HOURS, dry_run=dry_run)
    log.info("retention.pruned", run_id=run_id, days=days, cutoff=cutoff.isoformat(), dry_run=dry_run,
             audit=report.removed["payverify_audit"], outbox=report.removed["payverify_outbox"],
             runs=report.removed["payverify_runs"], processes=processes, batches=report.batches,
             complete=report.complete,
             seconds=round(time.monotonic() - started, 3))
    return report


def hourly_prune(settings: Settings, db: Database, *, host: str, run_id: str, batch_size: int = BATCH_SIZE,
                 seconds: float = PASS_SECONDS) -> PruneReport | None:
    """A run's housekeeping: prune for at most `seconds` unless a pass began within the hour on any
    host (None then). A database error ends the pass with a warning: pruning never fails a run."""
    try:
        with db.transaction() as tx:
            claimed = tx.one("claim_housekeeping", task=TASK, host=host, run_id=run_id, every_seconds=EVERY_SECONDS)
        if claimed is None:
            return None
        return prune(db, days=settings.retention_days, batch_size=batch_size, seconds=seconds, run_id=run_id)
    except DatabaseError as exc:  # a lock or statement timeout: the rest waits for the next hour
        log.warning("retention.prune_failed", run_id=run_id, error=str(exc))
        return None

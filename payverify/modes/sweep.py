"""One sweep: select due orders (no lock), claim each with a lease, verify it, settle it.

The lease (payverify_order_state, FOR UPDATE SKIP LOCKED) keeps overlapping runs and hosts from
asking SumUp about the same order at once; correctness does not depend on it (see settle.py).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from payverify import faults
from payverify.config import Settings
from payverify.db import Database
from payverify.db.presence import ALIVE_SECONDS
from payverify.modes.attempt import OrderFailure, Worker, Workers, attempt_order
from payverify.orders.decision import widen_rescue
from payverify.orders.settle import Attempt
from payverify.orders.verify import Result, Verifier
from payverify.sumup.client import SumUpClient
from payverify.sumup.credentials import RunMemory
from payverify.sumup.ratelimit import RateLimiter

# Failed/expired orders in the rescue window are re-checked at most this often: a late payment is
# rare, and an hour is soon enough to issue its tickets while keeping these re-checks a trickle.
RESCUE_RECHECK_MINUTES = 60

log = structlog.get_logger("payverify.modes.sweep")

# Due orders fetched per query: memory stays flat however long the backlog.
BATCH_SIZE = 200
# Erroring orders a report keeps by name (for stderr); the rest are only counted.
FAILURES_KEPT = 20


# What a task gives back: verified (a Result), error (an OrderFailure), claimed or budget (None).
TaskOutcome = tuple[str, Result | OrderFailure | None]


@dataclass
class SweepReport:
    run_id: str
    dry_run: bool
    deadline: float = 0.0  # time.monotonic() after which no new work starts
    due: int = 0
    total_due: int = 0  # as counted by the first batch's query, for a progress bar
    verified: int = 0
    claimed_elsewhere: int = 0
    errors: int = 0  # orders whose verification raised
    failures: list[OrderFailure] = field(default_factory=list)  # the first FAILURES_KEPT of them
    sumup_unreachable: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    sumup_errors: Counter[str] = field(default_factory=Counter)  # by failure class, for the metrics
    stopped_early: str | None = None
    results: list[Result] = field(default_factory=list)

    @property
    def sumup_down(self) -> bool:
        """Every order asked got no reply from SumUp at all: the run could not do its job."""
        return self.verified > 0 and self.sumup_unreachable == self.verified


def sweep(settings: Settings, connect: Callable[[], Database], make_client: Callable[[RateLimiter], SumUpClient],
          attempt: Attempt, *, since: datetime | None = None, limit: int | None = None, dry_run: bool = False,
          keep_results: bool = False, progress: Callable[[int, int], None] | None = None,
          settled: Callable[[], None] | None = None, stop: threading.Event | None = None,
          recheck_seconds: int = 0) -> SweepReport:
    """Verify due orders until none is left, the limit or the time budget; up to
    PAYVERIFY_CONCURRENCY at once, each worker with its own connection and no transaction open
    while SumUp answers. Due orders are fetched in batches, so memory does not grow with the
    backlog. `progress(done, total)` after each order; `settled()` after each order whose attempt
    committed (what it queued can be mailed now). `stop` set (SIGTERM): no new order is started, and
    every wait ends. `recheck_seconds`: an order awaiting payment is due only when it was not checked
    for that long (never checked: when it is that old); watch's minute housekeeping asks as a
    five-minute cron tick would."""
    deadline = time.monotonic() + settings.time_budget_seconds
    report = SweepReport(run_id=attempt.run_id, dry_run=dry_run, deadline=deadline)
    limit = limit or settings.max_orders_per_run
    limiter = RateLimiter(settings.sumup_rate, stop=stop, deadline=deadline)  # every wait ends with the run
    memory = RunMemory()
    with connect() as db:
        with db.transaction() as tx:
            now = tx.require_one("now")["now"]
        policy = widen_rescue(settings.policy, since, now)
        selection = {"rescue_since": now - timedelta(hours=policy.rescue_hours),
                     "rescue_checked_before": now if since else now - timedelta(minutes=RESCUE_RECHECK_MINUTES),
                     "aging": since is None, "run_started": now, "recheck_seconds": recheck_seconds,
                     "owner": attempt.lease_owner, "alive_seconds": ALIVE_SECONDS}

        def make_worker() -> Worker:
            worker_db = connect()
            client = make_client(limiter)
            return Worker(worker_db, client, Verifier(settings, worker_db, client, attempt, policy=policy,
                                                        dry_run=dry_run, memory=memory))

        workers = Workers(make_worker)

        def task(row: dict) -> TaskOutcome:
            if time.monotonic() > deadline or (stop is not None and stop.is_set()):
                return "budget", None
            # stderr gets the command's own line for a failure (see SweepReport.failures), not the log's.
            return attempt_order(workers, settings, attempt, row["id"], seen_last_checked_at=row["last_checked_at"],
                                 dry_run=dry_run, console=False)

        log.info("sweep.start", run_id=attempt.run_id, dry_run=dry_run, concurrency=settings.concurrency,
                 since=since.isoformat() if since else None)
        try:
            with ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="verify") as pool:
                _drive(pool, task, db, selection, report, limit=limit, dry_run=dry_run,
                       in_flight_max=2 * settings.concurrency, keep_results=keep_results,
                       progress=(lambda done: progress(done, report.total_due or done)) if progress else None,
                       settled=settled, stop=stop)
        finally:
            workers.close()
    log.info("sweep.end", run_id=attempt.run_id, due=report.due, verified=report.verified,
             claimed_elsewhere=report.claimed_elsewhere, errors=report.errors,
             outcomes=dict(report.outcomes), stopped_early=report.stopped_early)
    return report


def _drive(pool: ThreadPoolExecutor, task: Callable[[dict], TaskOutcome], db: Database,
           selection: dict, report: SweepReport, *, limit: int, dry_run: bool, in_flight_max: int,
           keep_results: bool, progress: Callable[[int], None] | None,
           settled: Callable[[], None] | None, stop: threading.Event | None = None) -> None:
    """Keep the pool busy: fetch the next batch of due orders when the queue runs dry, never the ones
    in flight (or already done: after their check they are no longer due)."""
    queue: deque[dict] = deque()
    in_flight: dict[Future, int] = {}
    seen: set[int] = set()
    exhausted = False
    done = 0
    try:
        while True:
            while (len(in_flight) < in_flight_max and report.due < limit and time.monotonic() <= report.deadline
                   and not (stop is not None and stop.is_set())):
                if not queue and not exhausted:
                    with db.transaction() as tx:
                        rows = tx.all("select_due_orders", **selection, exclude=list(in_flight.values()),
                                      limit=limit - report.due if dry_run else min(BATCH_SIZE, limit - report.due))
                    faults.point("after_due_batch")
                    if rows and not report.total_due:
                        report.total_due = min(limit, rows[0]["due_total"])
                    fresh = [r for r in rows if r["id"] not in seen]
                    exhausted = not fresh or dry_run  # a dry run writes nothing: one batch, its size the limit
                    queue.extend(fresh)
                    seen.update(r["id"] for r in fresh)
                if not queue:
                    break
                row = queue.popleft()
                report.due += 1
                in_flight[pool.submit(task, row)] = row["id"]
            if not in_flight:
                break
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                del in_flight[future]
                ending, result = future.result()
                _tally(report, ending, result, keep_results=keep_results)
                if settled is not None and ending in ("verified", "error"):
                    settled()  # a settle, or an error streak's alert, may have queued mail
                done += 1
                if progress is not None:
                    progress(done)
    except BaseException:
        for future in in_flight:
            future.cancel()
        raise
    if queue or not exhausted:
        if time.monotonic() > report.deadline:
            report.stopped_early = "time budget spent"
        elif report.due >= limit:
            report.stopped_early = "per-run limit reached"


def _tally(report: SweepReport, ending: str, result: Result | OrderFailure | None, *, keep_results: bool) -> None:
    if ending == "claimed":
        report.claimed_elsewhere += 1
    elif ending == "error":
        assert isinstance(result, OrderFailure)
        report.errors += 1
        if len(report.failures) < FAILURES_KEPT:
            report.failures.append(result)
    elif ending == "budget":
        report.due -= 1
        report.stopped_early = "time budget spent"
    else:
        assert isinstance(result, Result)
        report.verified += 1
        report.outcomes[result.outcome] += 1
        report.sumup_unreachable += result.answer.transport_failure
        if failure := result.answer.failure:
            report.sumup_errors[failure] += 1
        if keep_results:
            report.results.append(result)

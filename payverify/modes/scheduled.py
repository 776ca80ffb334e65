"""One scheduled run, as cron starts it: sweep with mail going out as orders settle, stuck digest,
the rest of the mail, the hourly retention pass, then bookkeeping and monitoring.

The heartbeat is pinged at start, on success and on failure (a ping never fails a run); the run is
recorded in payverify_runs and the metrics file rewritten, whatever happened (modes/recorded.py).

A run ends within PAYVERIFY_TIME_BUDGET + MAIL_AFTER_BUDGET_SECONDS whatever SumUp does: no new order
after the budget, every SumUp request and wait bounded (sumup/client.py, sumup/ratelimit.py), the mail
left for after the sweep within that too. `stop` set (SIGTERM or SIGINT): no new order, the waits wake,
orders in flight finish, queued mail gets STOP_MAIL_GRACE_SECONDS, the hourly retention waits for a
later run; the run is recorded and exits as if it had ended (0 when nothing else went wrong).

A run in which an order's verification errored (not a SumUp "no answer") still exits 0: the other
orders were done, and the order is retried next run. It is loud elsewhere: the heartbeat gets /fail,
the metrics count it, stderr names the order, and staff get an alert once it errored a few runs in a row.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from payverify.exitcodes import ExitStatus
from payverify.mail.pipeline import MailPipeline
from payverify.mail.sender import SendReport
from payverify.modes.recorded import Bookkeeping, Run, recorded_run
from payverify.modes.retention import hourly_prune
from payverify.modes.runtime import Runtime
from payverify.modes.sweep import SweepReport, sweep
from payverify.orders.stuck_digest import queue_stuck_digest

# Mail left after the sweep may be sent until this long after the time budget (at least until the budget).
MAIL_AFTER_BUDGET_SECONDS = 30.0
# Stopping: queued mail gets this long; the rest waits in the outbox for the next run.
STOP_MAIL_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class RunResult:
    sweep: SweepReport
    mail: SendReport | None
    status: ExitStatus


def _summary(report: SweepReport) -> str:
    outcomes = ", ".join(f"{n} {name}" for name, n in sorted(report.outcomes.items()))
    summary = f"{report.verified} of {report.due} verified: {outcomes or ('nothing due' if not report.due else 'none')}"
    if report.errors:  # first: the heartbeat's log shows the start of the body
        summary = f"{report.errors} order(s) could not be verified (errors); {summary}"
    return summary


def scheduled_run(rt: Runtime, *, since: datetime | None = None, limit: int | None = None,
                  dry_run: bool = False, progress: Callable[[int, int], None] | None = None,
                  stop: threading.Event | None = None) -> RunResult:
    books = Bookkeeping(host=rt.host, command="sweep", heartbeat_url=None if dry_run else rt.settings.heartbeat_url,
                        metrics_file=rt.settings.metrics_file, record=not dry_run)
    with recorded_run(rt.database, rt.run_id, books) as run:
        result = _run(rt, run, since=since, limit=limit, dry_run=dry_run, progress=progress, stop=stop)
        # A run with erroring orders is degraded even though it exits 0: the heartbeat gets /fail.
        summary, healthy = _summary(result.sweep), result.status == ExitStatus.OK and not result.sweep.errors
        run.end(result.status, summary if healthy else f"run {rt.run_id}: {summary}; exit {int(result.status)}",
                healthy=healthy)
    return result


def _run(rt: Runtime, run: Run, *, since, limit, dry_run, progress, stop) -> RunResult:
    def connect():
        return rt.database(check_schema=False)

    if dry_run:  # writes nothing, sends nothing
        preview = sweep(rt.settings, connect, rt.sumup_client, rt.attempt("sweep"), since=since, limit=limit,
                        dry_run=True, keep_results=True, progress=progress, stop=stop)
        return RunResult(sweep=preview, mail=None,
                         status=ExitStatus.SUMUP_UNAVAILABLE if preview.sumup_down else ExitStatus.OK)
    db = run.db
    # A run that writes is seen alive while it runs: its claims die with it (db/presence.py).
    with rt.presence("sweep"):
        with db.transaction() as tx:
            started = tx.require_one("now")["now"]
        budget_end = time.monotonic() + rt.settings.time_budget_seconds
        # Mail goes out as orders settle, and shares the run's time budget (what is left after the
        # sweep may be sent until MAIL_AFTER_BUDGET_SECONDS past it), so runs do not pile up.
        mail_end = budget_end + MAIL_AFTER_BUDGET_SECONDS
        with MailPipeline(rt.settings, connect, deadline=mail_end, fresh_since=started,
                          owner=rt.lease_owner) as pipeline:
            report = sweep(rt.settings, connect, rt.sumup_client, rt.attempt("sweep"), since=since,
                           limit=limit, progress=progress, settled=pipeline.feed.poke, stop=stop)
            run.report, run.sumup_errors = report, dict(report.sumup_errors)  # kept should the rest fail
            stopping = stop is not None and stop.is_set()
            if stopping and report.stopped_early is None:
                report.stopped_early = "stopped by a signal"
            queue_stuck_digest(rt.settings, db)
            mail = pipeline.finish(db, deadline=time.monotonic() + STOP_MAIL_GRACE_SECONDS if stopping
                                   else min(mail_end, max(report.deadline, time.monotonic() + 30)))
            run.mail = mail
        if not stopping:
            hourly_prune(rt.settings, db, host=rt.host, run_id=rt.run_id)  # after the mail: it can wait
    # Stopped, an order SumUp did not answer says nothing of the run: it exits as it stopped, 0.
    status = ExitStatus.SUMUP_UNAVAILABLE if report.sumup_down and not stopping else ExitStatus.OK
    return RunResult(sweep=report, mail=mail, status=status)

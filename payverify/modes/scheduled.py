"""One scheduled run, as cron starts it: sweep with mail going out as orders settle, stuck digest,
the rest of the mail, the hourly retention pass, then bookkeeping and monitoring.

The heartbeat is pinged at start, on success and on failure (a ping never fails a run); the run is
recorded in payverify_runs and the metrics file rewritten, whatever happened.

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

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from payverify.errors import DatabaseUnavailable, PayverifyError
from payverify.exitcodes import ExitStatus
from payverify.mail.pipeline import MailPipeline
from payverify.mail.sender import SendReport
from payverify.modes.retention import hourly_prune
from payverify.modes.runtime import Runtime
from payverify.modes.sweep import SweepReport, sweep
from payverify.monitoring import Heartbeat, publish_metrics, record_run_end, record_run_start
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
    beat = Heartbeat(None if dry_run else rt.settings.heartbeat_url)
    beat.start()
    try:
        result = _run(rt, since=since, limit=limit, dry_run=dry_run, progress=progress, stop=stop)
    except BaseException as exc:
        beat.fail(f"run {rt.run_id} failed: {type(exc).__name__}")
        raise
    if result.status == ExitStatus.OK and not result.sweep.errors:
        beat.success(_summary(result.sweep))
    else:  # a run with erroring orders is degraded even though it exits 0
        beat.fail(f"run {rt.run_id}: {_summary(result.sweep)}; exit {int(result.status)}")
    return result


def _run(rt: Runtime, *, since, limit, dry_run, progress, stop) -> RunResult:
    def connect():
        return rt.database(check_schema=False)

    # A run that writes is seen alive while it runs: its claims die with it (db/presence.py).
    with rt.database() as db, contextlib.nullcontext() if dry_run else rt.presence("sweep"):
        if dry_run:  # writes nothing, sends nothing
            preview = sweep(rt.settings, connect, rt.sumup_client, rt.attempt("sweep"), since=since, limit=limit,
                            dry_run=True, keep_results=True, progress=progress, stop=stop)
            return RunResult(sweep=preview, mail=None,
                             status=ExitStatus.SUMUP_UNAVAILABLE if preview.sumup_down else ExitStatus.OK)
        record_run_start(db, rt.run_id, rt.host, "sweep")
        report: SweepReport | None = None
        mail: SendReport | None = None
        status = ExitStatus.ERROR
        database_lost = False
        try:
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
                stopping = stop is not None and stop.is_set()
                if stopping and report.stopped_early is None:
                    report.stopped_early = "stopped by a signal"
                queue_stuck_digest(rt.settings, db)
                mail = pipeline.finish(db, deadline=time.monotonic() + STOP_MAIL_GRACE_SECONDS if stopping
                                       else min(mail_end, max(report.deadline, time.monotonic() + 30)))
            if not stopping:
                hourly_prune(rt.settings, db, host=rt.host, run_id=rt.run_id)  # after the mail: it can wait
            # Stopped, an order SumUp did not answer says nothing of the run: it exits as it stopped, 0.
            status = ExitStatus.SUMUP_UNAVAILABLE if report.sumup_down and not stopping else ExitStatus.OK
        except BaseException as exc:
            status = _exit_status_of(exc)
            database_lost = isinstance(exc, DatabaseUnavailable)
            raise
        finally:  # both never raise, so the run's own exception goes on
            # With the database gone there is nothing to write to: the run's one stderr line says so,
            # and its row stays unfinished (counted so in the metrics) rather than a second warning.
            if not database_lost:
                record_run_end(db, rt.run_id, int(status), report, mail,
                               dict(report.sumup_errors) if report else None)
                publish_metrics(db, rt.host, rt.settings.metrics_file)
    return RunResult(sweep=report, mail=mail, status=status)


def _exit_status_of(exc: BaseException) -> ExitStatus:
    """The status the process exits with for an exception leaving the run (as payverify.cli.main maps it)."""
    if isinstance(exc, PayverifyError):
        return exc.exit_status
    if isinstance(exc, KeyboardInterrupt):
        return ExitStatus.INTERRUPTED
    return ExitStatus.ERROR

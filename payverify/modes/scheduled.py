"""One scheduled run, as cron starts it: sweep, stuck digest, mail, then bookkeeping and monitoring.

The heartbeat is pinged at start, on success and on failure (a ping never fails a run); the run is
recorded in payverify_runs and the metrics file rewritten, whatever happened.

A run in which an order's verification errored (not a SumUp "no answer") still exits 0: the other
orders were done, and the order is retried next run. It is loud elsewhere: the heartbeat gets /fail,
the metrics count it, stderr names the order, and staff get an alert once it errored a few runs in a row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from payverify.exitcodes import ExitStatus
from payverify.mail.sender import SendReport, deliver
from payverify.modes.runtime import Runtime
from payverify.modes.sweep import SweepReport, sweep
from payverify.monitoring import Heartbeat, publish_metrics, record_run_end, record_run_start
from payverify.orders.stuck_digest import queue_stuck_digest


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
                  dry_run: bool = False, progress: Callable[[int, int], None] | None = None) -> RunResult:
    beat = Heartbeat(None if dry_run else rt.settings.heartbeat_url)
    beat.start()
    try:
        result = _run(rt, since=since, limit=limit, dry_run=dry_run, progress=progress)
    except BaseException as exc:
        beat.fail(f"run {rt.run_id} failed: {type(exc).__name__}")
        raise
    if result.status == ExitStatus.OK and not result.sweep.errors:
        beat.success(_summary(result.sweep))
    else:  # a run with erroring orders is degraded even though it exits 0
        beat.fail(f"run {rt.run_id}: {_summary(result.sweep)}; exit {int(result.status)}")
    return result


def _run(rt: Runtime, *, since, limit, dry_run, progress) -> RunResult:
    with rt.database() as db:
        if not dry_run:
            record_run_start(db, rt.run_id, rt.host, "sweep")
        report = sweep(rt.settings, lambda: rt.database(check_schema=False), rt.sumup_client, rt.attempt("sweep"),
                       since=since, limit=limit, dry_run=dry_run, keep_results=dry_run, progress=progress)
        mail = None
        if not dry_run:
            queue_stuck_digest(rt.settings, db)
            # Mail shares the run's time budget (at least half a minute), so runs do not pile up.
            mail = deliver(rt.settings, db, deadline=max(report.deadline, time.monotonic() + 30))
        status = ExitStatus.SUMUP_UNAVAILABLE if report.sumup_down else ExitStatus.OK
        if not dry_run:
            record_run_end(db, rt.run_id, int(status), report, mail, dict(report.sumup_errors))
            publish_metrics(db, rt.host, rt.settings.metrics_file)
    return RunResult(sweep=report, mail=mail, status=status)

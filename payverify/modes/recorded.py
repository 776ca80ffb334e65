"""One recorded run: the bookkeeping a sweep, a watch's housekeeping pass and a reconciliation share.

`recorded_run` opens the run's database and owns what is around the run's own work: the heartbeat's
/start (when asked for), the payverify_runs row (started, then ended with the exit status and what
the run did), the metrics file, then the heartbeat's success or /fail. The run tells it how it went
(`Run.end`); a run that raises is recorded with the status the process exits with, its heartbeat
gets /fail naming the exception's type, and the exception goes on. With the database gone there is
nothing to write to: the run's one stderr line says so, and its row stays unfinished (counted so in
the metrics) rather than a second warning. None of the bookkeeping ever fails a run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from payverify.db import Database
from payverify.errors import DatabaseUnavailable, PayverifyError
from payverify.exitcodes import ExitStatus
from payverify.monitoring import Heartbeat, Metric, publish_metrics, record_run_end, record_run_start
from payverify.monitoring.runs import MailTally, RunTally
from payverify.secret import Secret


@dataclass
class Run:
    """The run in progress: its database, and how it went once it says so (`end`)."""

    db: Database
    run_id: str
    status: ExitStatus = ExitStatus.ERROR  # until the run says otherwise (end)
    report: RunTally | None = None
    mail: MailTally | None = None
    sumup_errors: Mapping[str, int] | None = None
    healthy: bool = False  # the heartbeat gets success (else /fail) ...
    summary: str = ""  # ... with this body

    def end(self, status: ExitStatus, summary: str = "", *, healthy: bool | None = None) -> None:
        """How the run went: its exit status and the heartbeat's body (success when `healthy`, by default
        when the status is 0). What it did (report, mail, sumup_errors) is set as soon as it is known, so
        that a run failing after it is recorded with it."""
        self.status, self.summary = status, summary
        self.healthy = status == ExitStatus.OK if healthy is None else healthy


@dataclass(frozen=True)
class Bookkeeping:
    """Where a run is recorded. `record` False (a dry run): no run row, no metrics file."""

    host: str
    command: str  # the run row's
    heartbeat_url: Secret | None
    metrics_file: str | None
    metrics_command: str = "sweep"  # whose runs the metrics file shows
    extra_metrics: Callable[[], Sequence[Metric]] = tuple  # this process's own, read at the end
    ping_start: bool = True
    failed: str = "run {run_id} failed: {error}"  # the heartbeat's /fail body for a run that raised
    record: bool = True


@contextmanager
def recorded_run(connect: Callable[[], AbstractContextManager[Database]], run_id: str,
                 books: Bookkeeping) -> Iterator[Run]:
    beat = Heartbeat(books.heartbeat_url)
    if books.ping_start:
        beat.start()
    try:
        with connect() as db:
            run = Run(db, run_id)
            if books.record:
                record_run_start(db, run_id, books.host, books.command)
            database_lost = False
            try:
                yield run
            except BaseException as exc:
                run.status = exit_status_of(exc)
                database_lost = isinstance(exc, DatabaseUnavailable)
                raise
            finally:  # both never raise, so the run's own exception goes on
                if books.record and not database_lost:
                    record_run_end(db, run_id, int(run.status), run.report, run.mail, run.sumup_errors)
                    publish_metrics(db, books.host, books.metrics_file, command=books.metrics_command,
                                    extra=books.extra_metrics())
    except BaseException as exc:
        beat.fail(books.failed.format(run_id=run_id, error=type(exc).__name__))
        raise
    if run.healthy:
        beat.success(run.summary)
    else:
        beat.fail(run.summary)


def exit_status_of(exc: BaseException) -> ExitStatus:
    """The status the process exits with for an exception leaving the run (as payverify.cli.main maps it)."""
    if isinstance(exc, PayverifyError):
        return exc.exit_status
    if isinstance(exc, KeyboardInterrupt):
        return ExitStatus.INTERRUPTED
    return ExitStatus.ERROR

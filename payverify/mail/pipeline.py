"""Mail while verifying: SMTP workers that send what the settle path queues, as soon as it commits.

The outbox stays the only way mail leaves: each worker claims due rows (SKIP LOCKED) exactly as the
sender after a sweep would, so the at-least-once and de-duplication guarantees are the outbox's own.
The sweep pokes the feed after each order; a worker that finds nothing due waits for the next poke
(or a second, for rows whose backoff ends) and stops once the sweep has finished and nothing is left,
or at the deadline. PAYVERIFY_SMTP_CONNECTIONS workers, each with its own SMTP session and database
connection; in a burst they hand the composing to worker processes (mail/compose_pool.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime
from functools import partial
from types import TracebackType

import structlog

from payverify.config import Settings
from payverify.db import Database
from payverify.errors import DatabaseUnavailable, PayverifyError
from payverify.liveness import Liveness
from payverify.mail.compose_pool import ComposePool, worker_count
from payverify.mail.feed import MailFeed
from payverify.mail.sender import OutboxSender, SendReport, report_trouble

log = structlog.get_logger("payverify.mail.pipeline")

# A watch's mail worker after a database or SMTP outage or an error: 1, 2, 4, ... seconds, at most a minute.
MIN_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS = 1.0, 60.0
# How long past its deadline a run's end waits for a worker still in an SMTP exchange or a statement.
EXIT_GRACE_SECONDS = 2.0


def _reason(exc: BaseException) -> str:
    """One line safe to log: our errors carry one; anything else is named by its type."""
    return str(exc) if isinstance(exc, PayverifyError) else type(exc).__name__


class MailPipeline:
    """The mail workers of one run: started before the sweep, finished after it."""

    def __init__(self, settings: Settings, connect: Callable[[], Database], deadline: float, *,
                 fresh_since: datetime | None = None, keep_going: bool = False, owner: str | None = None,
                 liveness: Liveness | None = None) -> None:
        """`keep_going` (payverify watch): a worker outlives database and SMTP outages and any other
        exception (logged with its traceback, counted in `liveness`), backing off, until the feed
        finishes; in a sweep a lost database ends the run, and an SMTP server that refuses the session
        leaves the rest for the next run. `owner`: the claims' (OutboxSender)."""
        self._settings = settings
        self._owner = owner
        self._connect = connect
        self._keep_going = keep_going
        self._liveness = liveness or Liveness()
        self.feed = MailFeed(deadline, fresh_since)
        self._compose_pool = ComposePool(settings, worker_count(settings.smtp_connections))
        self._pool = ThreadPoolExecutor(max_workers=settings.smtp_connections, thread_name_prefix="mail")
        self._workers: list[Future[SendReport]] = []

    def __enter__(self) -> MailPipeline:
        self._workers = [self._pool.submit(self._work, n) for n in range(1, self._settings.smtp_connections + 1)]
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # On the way out of a failed run: let the workers stop at their next look. Waiting is bounded:
        # a worker stuck past the deadline (a hung SMTP server) is left behind, never waited on forever.
        if kind is not None or not self.feed.done:
            self.feed.finish(deadline=time.monotonic())
        wait(self._workers, timeout=max(0.0, self.feed.deadline - time.monotonic()) + EXIT_GRACE_SECONDS)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._compose_pool.close()

    def _work(self, n: int) -> SendReport:
        if not self._keep_going:
            with self._connect() as db:
                return self._sender(db).send_due(feed=self.feed)
        loop = f"mail.{n}"
        tick = partial(self._liveness.tick, loop)
        total, backoff = SendReport(), MIN_BACKOFF_SECONDS
        try:
            while not self.feed.done:
                tick()
                try:
                    with self._connect() as db:
                        report = self._sender(db).send_due(feed=self.feed, tick=tick)
                except DatabaseUnavailable as exc:
                    log.warning("mail.database_unavailable", error=str(exc), retry_in=backoff)
                    report = None
                except Exception as exc:  # a lock or statement timeout, a bug: this worker must not end
                    log.error("mail.worker_failed", loop="mail", error=_reason(exc), retry_in=backoff,
                              exc_info=True)
                    self._liveness.failed("mail")
                    report = None
                if report is not None:
                    total.merge(report)
                    if report.not_configured:
                        return total  # nothing will ever be sent; the sweep's housekeeping says so
                    if not report.smtp_down:
                        backoff = MIN_BACKOFF_SECONDS
                        continue
                tick(quiet=backoff)
                self.feed.pause(backoff)
                backoff = min(MAX_BACKOFF_SECONDS, backoff * 2)
        finally:
            self._liveness.done(loop)
        return total

    def _sender(self, db: Database) -> OutboxSender:
        return OutboxSender(self._settings, db, pool=self._compose_pool, owner=self._owner)

    def finish(self, db: Database, deadline: float) -> SendReport:
        """Nothing more will be queued: wait for the workers to send what is due (until `deadline`)
        and say what they did, in one report (a worker's exception is raised here)."""
        self.feed.finish(deadline)
        total = SendReport()
        for worker in self._workers:
            total.merge(worker.result())
        report_trouble(db, total)
        return total

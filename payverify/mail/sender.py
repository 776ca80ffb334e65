"""The outbox sender: claims due rows (SKIP LOCKED), sends them over SMTP, marks them sent.

Runs beside a sweep's verification (mail/pipeline.py) and after `check`/`resend`. A message is marked sent only
after the SMTP server accepted it, so a crash in between sends it again on a later run: the one
documented window for a duplicate. Temporary failures retry with growing backoff (the next run,
then doubling up to an hour); after 24 hours, or on a permanent 5xx, the row is marked failed
and staff get one alert.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from payverify import faults
from payverify.config import Settings
from payverify.db import Database
from payverify.mail import message as mime
from payverify.mail import outbox
from payverify.mail.compose import compose
from payverify.mail.feed import MailFeed
from payverify.mail.kinds import ALERT_MAIL_FAILED, CONFIRMATION, REGISTRY
from payverify.mail.smtp import DeliveryFailed, SmtpTransport, parse_smtp_url

if TYPE_CHECKING:
    from payverify.mail.compose_pool import ComposePool
    from payverify.mail.render import Renderer

log = structlog.get_logger("payverify.mail")

GIVE_UP_HOURS = 24
CLAIM_LEASE_SECONDS = 600
MAX_BACKOFF_SECONDS = 3600


def backoff_seconds(attempts: int) -> int:
    """After the n-th failed attempt: 1, 2, 4, ... minutes (due at the next cron run), at most an hour."""
    return min(MAX_BACKOFF_SECONDS, 60 * 2 ** max(0, attempts - 1))


def missing_mail_settings(settings: Settings) -> list[str]:
    """What keeps every mail in the outbox: the sweep reports it, `doctor` fails on it."""
    wanted = (("PAYVERIFY_SMTP_URL", settings.smtp_url), ("PAYVERIFY_MAIL_FROM", settings.mail_from))
    return [f"{name} is not set" for name, value in wanted if not value]


@dataclass
class SendReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    not_configured: str | None = None
    smtp_down: str | None = None

    def merge(self, other: SendReport) -> None:
        """Add another worker's report to this one."""
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.not_configured = self.not_configured or other.not_configured
        self.smtp_down = self.smtp_down or other.smtp_down


class OutboxSender:
    def __init__(self, settings: Settings, db: Database, *, transport: SmtpTransport | None = None,
                 renderer: Renderer | None = None, pool: ComposePool | None = None) -> None:
        self.settings = settings
        self.db = db
        self._transport = transport
        self._renderer = renderer
        self._pool = pool

    def _missing_setting(self) -> str | None:
        missing = missing_mail_settings(self.settings)
        return missing[0] if missing else None

    def send_due(self, *, limit: int = 5000, deadline: float | None = None,
                 feed: MailFeed | None = None) -> SendReport:
        """Send due rows until none is left, `limit` or `deadline`. With a `feed` (mail while a sweep
        verifies), none left means: wait for the sweep to queue more, until it has finished."""
        report = SendReport()
        report.not_configured = self._missing_setting()
        smtp_url = self.settings.smtp_url
        if report.not_configured or smtp_url is None:  # an unset URL is already not_configured
            return report
        transport = self._transport or SmtpTransport(parse_smtp_url(smtp_url))
        renderer = self._renderer
        try:
            while report.sent + report.failed + report.retried < limit:
                until = feed.deadline if feed is not None else deadline
                if until is not None and time.monotonic() > until:
                    break
                mark = feed.mark() if feed is not None else 0
                with self.db.transaction() as tx:
                    row = tx.one("claim_outbox_row", lease_seconds=CLAIM_LEASE_SECONDS, give_up_hours=GIVE_UP_HOURS,
                                 fresh_since=feed.fresh_since if feed is not None else None)
                if self._pool is not None:
                    (self._pool.idle if row is None else self._pool.busy)()
                if row is None:
                    if feed is not None and feed.wait_for_more(mark):
                        continue
                    break
                if renderer is None:
                    from payverify.mail.render import Renderer  # Jinja2 only when there is mail to render

                    renderer = Renderer(self.settings)
                failure = self._deliver(row, transport, renderer, report, feed)
                if failure is not None and failure.connection:
                    report.smtp_down = failure.reason  # the rest waits for the next run
                    break
        finally:
            if self._transport is None:
                transport.close()
        return report

    def _deliver(self, row: dict[str, Any], transport: SmtpTransport, renderer: Renderer,
                 report: SendReport, feed: MailFeed | None = None) -> DeliveryFailed | None:
        try:
            message, composed_by = self._compose(row, renderer, feed)
        except mime.BadAddress as exc:
            self._fail(row, f"cannot be sent: {exc}", report)
            return None
        except Exception as exc:  # a template or attachment bug: retried, alerted after 24 h
            log.error("mail.build_failed", outbox_id=row["id"], kind=row["kind"], error=type(exc).__name__,
                      exc_info=True)
            exc = DeliveryFailed(f"message could not be built ({type(exc).__name__})")
            if row["too_old"]:
                self._fail(row, f"still failing after {GIVE_UP_HOURS} h: {exc.reason}", report)
            else:
                self._retry(row, exc.reason, report)
            return None
        try:
            refused = transport.send(message)
        except DeliveryFailed as exc:
            if exc.permanent or row["too_old"]:
                why = exc.reason if exc.permanent else f"still failing after {GIVE_UP_HOURS} h: {exc.reason}"
                self._fail(row, why, report)
            else:
                self._retry(row, exc.reason, report)
            return exc
        faults.point("after_smtp_accept")
        note = f"refused by the server for {', '.join(refused)}" if refused else None
        faults.point("before_mark_sent")
        with self.db.transaction() as tx:
            tx.run("mark_outbox_sent", id=row["id"], note=note)
        report.sent += 1
        log.info("mail.sent", outbox_id=row["id"], kind=row["kind"], order_id=row["order_id"],
                 attempts=row["attempts"], message_id=row["message_id"], composed_by=composed_by)
        return None

    def _retry(self, row: dict[str, Any], reason: str, report: SendReport) -> None:
        with self.db.transaction() as tx:
            tx.run("mark_outbox_retry", id=row["id"], error=reason, delay_seconds=backoff_seconds(row["attempts"]))
        report.retried += 1
        log.info("mail.retry", outbox_id=row["id"], kind=row["kind"], error=reason, attempts=row["attempts"])

    def _fail(self, row: dict[str, Any], reason: str, report: SendReport) -> None:
        """Give up on a row, and tell staff once (unless the row was itself such an alert)."""
        with self.db.transaction() as tx:
            tx.run("mark_outbox_failed", id=row["id"], error=reason)
            if row["kind"] != ALERT_MAIL_FAILED:
                outbox.queue(tx, self.settings, mail_failed_alert(row, reason, self.settings))
        report.failed += 1
        log.error("mail.failed", outbox_id=row["id"], kind=row["kind"], order_id=row["order_id"], error=reason)

    def _compose(self, row: dict[str, Any], renderer: Renderer,
                 feed: MailFeed | None = None) -> tuple[mime.Composed, str]:
        """The message, and who composed it: a worker process, or this thread."""
        tickets = None
        if row["kind"] == CONFIRMATION and row["order_id"] is not None:
            with self.db.transaction() as tx:
                tickets = tx.all("order_tickets", order_id=row["order_id"])
        composed = None
        if self._pool is not None:  # once the sweep is over, this process has CPU to spare for it
            composed = self._pool.compose(row, tickets, here_when_busy=feed is None or feed.done)
        if composed is not None:
            faults.point("after_worker_composed")
            return composed, "worker"
        return compose(row, tickets, self.settings, renderer), "sender"


def mail_failed_alert(row: dict[str, Any], reason: str, settings: Settings) -> outbox.OutboxMessage:
    context = row["context"] or {}
    return outbox.OutboxMessage(
        kind=ALERT_MAIL_FAILED, dedup_key=REGISTRY[ALERT_MAIL_FAILED].key(row["id"]), order_id=row["order_id"],
        recipients=settings.alert_recipients,
        context={"failed": {"id": row["id"], "kind": row["kind"], "recipients": list(row["recipients"]),
                            "attempts": row["attempts"], "last_error": reason,
                            "order_number": context.get("order_number"), "order_id": row["order_id"],
                            "created_at": row["created_at"]}})


def deliver(settings: Settings, db: Database, *, deadline: float | None = None) -> SendReport:
    """Send what is due; say on stderr (through the log) when mail cannot go out at all."""
    report = OutboxSender(settings, db).send_due(deadline=deadline)
    report_trouble(db, report)
    return report


def report_trouble(db: Database, report: SendReport) -> None:
    """Say on stderr (through the log) when mail could not go out at all."""
    if report.not_configured:
        with db.transaction() as tx:
            waiting = tx.require_one("outbox_backlog")["pending"]
        if waiting:
            log.warning("mail.not_configured", problem=report.not_configured, waiting=waiting)
    elif report.smtp_down:
        log.warning("mail.smtp_unavailable", error=report.smtp_down, sent=report.sent)

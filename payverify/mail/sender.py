"""The outbox sender: claims due rows (SKIP LOCKED), sends them over SMTP, marks them sent.

Runs beside a sweep's verification (mail/pipeline.py) and after `check`/`resend`. A message is marked sent only
after the SMTP server accepted it, so a crash in between sends it again on a later run: the one
documented window for a duplicate. Temporary failures retry with growing backoff (the next run,
then doubling up to an hour); after 24 hours, or on a permanent 5xx, the row is marked failed
and staff get one alert.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from payverify import faults
from payverify.config import Settings
from payverify.db import Database
from payverify.db.presence import ALIVE_SECONDS
from payverify.errors import DatabaseError, DatabaseUnavailable, PayverifyError
from payverify.mail import message as mime
from payverify.mail import outbox
from payverify.mail.compose import compose
from payverify.mail.feed import MailFeed
from payverify.mail.kinds import ALERT_MAIL_FAILED, CONFIRMATION, REGISTRY
from payverify.mail.rows import OutgoingRow
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
                 renderer: Renderer | None = None, pool: ComposePool | None = None, owner: str | None = None) -> None:
        """`owner`: the process's lease owner (Runtime.lease_owner), whose claims are free to others at
        once when it dies (db/presence.py). None: a claim is only its lease (CLAIM_LEASE_SECONDS)."""
        self.settings = settings
        self.db = db
        self.owner = owner
        self._transport = transport
        self._renderer = renderer
        self._pool = pool

    def _missing_setting(self) -> str | None:
        missing = missing_mail_settings(self.settings)
        return missing[0] if missing else None

    def send_due(self, *, limit: int = 5000, deadline: float | None = None, feed: MailFeed | None = None,
                 order_id: int | None = None, tick: Callable[[], None] | None = None) -> SendReport:
        """Send due rows until none is left, `limit` or `deadline`. With a `feed` (mail while a sweep
        verifies), none left means: wait for the sweep to queue more, until it has finished. `tick`
        after each row and each look (watch's liveness). What it raises leaves no row claimed for
        long: the row in hand is given back first (due again at once), or, when the database is in
        trouble, taken back by this process's next claim."""
        report = SendReport()
        report.not_configured = self._missing_setting()
        smtp_url = self.settings.smtp_url
        if report.not_configured or smtp_url is None:  # an unset URL is already not_configured
            return report
        transport = self._transport or SmtpTransport(parse_smtp_url(smtp_url))
        renderer = self._renderer
        ahead: Claimed | None = None  # the next row, claimed while the current one is sent
        claimed: Claimed | None = None  # being sent: left behind if the database goes away meanwhile
        try:
            while report.sent + report.failed + report.retried < limit:
                if tick is not None:
                    tick()
                until = feed.deadline if feed is not None else deadline
                if until is not None and time.monotonic() > until:
                    break
                if ahead is not None:
                    claimed, ahead = ahead, None
                else:
                    mark = feed.mark() if feed is not None else 0
                    claimed = self._claim(feed, order_id)
                    if self._pool is not None:
                        (self._pool.idle if claimed is None else self._pool.busy)()
                    if claimed is None:
                        if feed is not None and feed.wait_for_more(mark):
                            continue
                        break
                if renderer is None:
                    from payverify.mail.render import Renderer  # Jinja2 only when there is mail to render

                    renderer = Renderer(self.settings)
                if claimed.started is not None and report.sent + report.failed + report.retried + 1 < limit:
                    # Workers compose: have the next one composed while this one goes over SMTP.
                    ahead = self._claim(feed, order_id)
                failure = self._deliver(claimed, transport, renderer, report)
                claimed = None
                if failure is not None and failure.connection:
                    report.smtp_down = failure.reason  # the rest waits for the next run
                    break
        except BaseException as exc:
            if claimed is not None and isinstance(exc, (DatabaseError, DatabaseUnavailable)):
                LEFT_BEHIND.add(self.owner, claimed.row.id)
            elif claimed is not None:  # a bug, say: not this message's fault
                self._release(claimed, why=exc)
            raise
        finally:
            if ahead is not None:
                self._release(ahead)
            if self._transport is None:
                transport.close()
        return report

    def _claim(self, feed: MailFeed | None, order_id: int | None = None) -> Claimed | None:
        """The next due row, its order's tickets (a confirmation's), and its composing begun when
        worker processes are running."""
        left_behind = LEFT_BEHIND.take(self.owner)
        taken = None  # once the claim is committed
        try:
            with self.db.transaction() as tx:
                found = tx.one("claim_outbox_row", lease_seconds=CLAIM_LEASE_SECONDS, give_up_hours=GIVE_UP_HOURS,
                               fresh_since=feed.fresh_since if feed is not None else None, order_id=order_id,
                               owner=self.owner, alive_seconds=ALIVE_SECONDS, left_behind=left_behind)
                if found is None:
                    return None
                row = OutgoingRow.from_row(found)
                tickets = None
                if row.kind == CONFIRMATION and row.order_id is not None:
                    tickets = tx.all("order_tickets", order_id=row.order_id)
            taken = row.id
        finally:
            LEFT_BEHIND.add(self.owner, *(i for i in left_behind if i != taken))
        return Claimed(row, tickets, self._pool.start(row, tickets) if self._pool is not None else None)

    def _release(self, claimed: Claimed, why: BaseException | None = None) -> None:
        """Claimed but never attempted (the run stopped first), or the attempt broke off on an error of
        ours (`why`, recorded for `check`): due again at once, attempt not counted. If the SMTP server
        had already accepted it, it goes again: the documented window for a duplicate."""
        if claimed.started is not None:
            claimed.started.cancel()
        try:
            with self.db.transaction() as tx:
                if why is None:
                    tx.run("release_outbox_row", id=claimed.row.id)
                else:
                    reason = str(why) if isinstance(why, PayverifyError) else type(why).__name__
                    tx.run("give_back_outbox_row", id=claimed.row.id, error=f"not sent: {reason}")
        except (DatabaseError, DatabaseUnavailable) as exc:  # the next claim of this process takes it back
            LEFT_BEHIND.add(self.owner, claimed.row.id)
            log.warning("mail.release_failed", outbox_id=claimed.row.id, error=str(exc))

    def _deliver(self, claimed: Claimed, transport: SmtpTransport, renderer: Renderer,
                 report: SendReport) -> DeliveryFailed | None:
        row = claimed.row
        try:
            message, composed_by = self._compose(claimed, renderer)
        except mime.BadAddress as exc:
            self._fail(row, f"cannot be sent: {exc}", report)
            return None
        except Exception as exc:  # a template or attachment bug: retried, alerted after 24 h
            log.error("mail.build_failed", outbox_id=row.id, kind=row.kind, error=type(exc).__name__,
                      exc_info=True)
            exc = DeliveryFailed(f"message could not be built ({type(exc).__name__})")
            if row.too_old:
                self._fail(row, f"still failing after {GIVE_UP_HOURS} h: {exc.reason}", report)
            else:
                self._retry(row, exc.reason, report)
            return None
        faults.point("before_smtp_send")
        if not self._still_ours(row):
            return None
        try:
            refused = transport.send(message)
        except DeliveryFailed as exc:
            if exc.connection:
                # The server as a whole (refused, dropped, 421, login): not this message's fault, so no
                # attempt is counted against it and no backoff delays it; the run stops sending instead.
                with self.db.transaction() as tx:
                    tx.run("give_back_outbox_row", id=row.id, error=exc.reason)
                log.info("mail.smtp_failed", outbox_id=row.id, kind=row.kind, error=exc.reason)
                return exc
            if exc.permanent or row.too_old:
                why = exc.reason if exc.permanent else f"still failing after {GIVE_UP_HOURS} h: {exc.reason}"
                self._fail(row, why, report)
            else:
                self._retry(row, exc.reason, report)
            return exc
        faults.point("after_smtp_accept")
        note = f"refused by the server for {', '.join(refused)}" if refused else None
        faults.point("before_mark_sent")
        with self.db.transaction() as tx:
            tx.run("mark_outbox_sent", id=row.id, note=note)
        report.sent += 1
        log.info("mail.sent", outbox_id=row.id, kind=row.kind, order_id=row.order_id,
                 attempts=row.attempts, message_id=row.message_id, composed_by=composed_by)
        return None

    def _still_ours(self, row: OutgoingRow) -> bool:
        """A process stopped for longer than ALIVE_SECONDS (SIGSTOP, a stall) loses its claims, and
        another may have sent the row meanwhile: asked just before SMTP, so a second copy can only come
        from the documented window (accepted by the server, not marked sent yet)."""
        if self.owner is None:
            return True
        with self.db.transaction() as tx:
            held = tx.one("outbox_claim_held", id=row.id, owner=self.owner) is not None
        if not held:
            log.warning("mail.claim_lost", outbox_id=row.id, kind=row.kind, console=False)
        return held

    def _retry(self, row: OutgoingRow, reason: str, report: SendReport) -> None:
        with self.db.transaction() as tx:
            tx.run("mark_outbox_retry", id=row.id, error=reason, delay_seconds=backoff_seconds(row.attempts))
        report.retried += 1
        log.info("mail.retry", outbox_id=row.id, kind=row.kind, error=reason, attempts=row.attempts)

    def _fail(self, row: OutgoingRow, reason: str, report: SendReport) -> None:
        """Give up on a row, and tell staff once (unless the row was itself such an alert)."""
        with self.db.transaction() as tx:
            tx.run("mark_outbox_failed", id=row.id, error=reason)
            if row.kind != ALERT_MAIL_FAILED:
                outbox.queue(tx, self.settings, mail_failed_alert(row, reason, self.settings))
        report.failed += 1
        log.error("mail.failed", outbox_id=row.id, kind=row.kind, order_id=row.order_id, error=reason)

    def _compose(self, claimed: Claimed, renderer: Renderer) -> tuple[mime.Composed, str]:
        """The message, and who composed it: a worker process, or this thread."""
        if claimed.started is not None and self._pool is not None:
            composed = self._pool.finish(claimed.started)
            if composed is not None:
                faults.point("after_worker_composed")
                return composed, "worker"
        return compose(claimed.row, claimed.tickets, self.settings, renderer), "sender"


class LeftBehind:
    """Outbox rows this process claimed and could not give back or mark (its database connection was
    lost): the next claim of any of its senders takes one back first, rather than letting it wait
    CLAIM_LEASE_SECONDS for a claim that a live process holds. A claim takes the whole set and puts back
    what it did not take, so two senders never take back the same row."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: dict[str, set[int]] = {}

    def add(self, owner: str | None, *ids: int) -> None:
        if owner is not None and ids:
            with self._lock:
                self._ids.setdefault(owner, set()).update(ids)

    def take(self, owner: str | None) -> list[int]:
        if owner is None:
            return []
        with self._lock:
            return sorted(self._ids.pop(owner, ()))


LEFT_BEHIND = LeftBehind()


@dataclass
class Claimed:
    """An outbox row claimed for sending, with its order's tickets (a confirmation's, else None) and,
    when worker processes compose, the composing they have begun."""

    row: OutgoingRow
    tickets: list[dict[str, Any]] | None
    started: Future[mime.Composed] | None = None


def mail_failed_alert(row: OutgoingRow, reason: str, settings: Settings) -> outbox.OutboxMessage:
    context = row.context or {}
    return outbox.OutboxMessage(
        kind=ALERT_MAIL_FAILED, dedup_key=REGISTRY[ALERT_MAIL_FAILED].key(row.id), order_id=row.order_id,
        recipients=settings.alert_recipients,
        context={"failed": {"id": row.id, "kind": row.kind, "recipients": list(row.recipients),
                            "attempts": row.attempts, "last_error": reason,
                            "order_number": context.get("order_number"), "order_id": row.order_id,
                            "created_at": row.created_at}})


# What `check` and `resend` may spend on mail before they answer: the person waiting is on a terminal.
INTERACTIVE_MAIL_SECONDS = 30.0


def deliver(settings: Settings, db: Database, *, deadline: float | None = None,
            order_id: int | None = None, owner: str | None = None) -> SendReport:
    """Send what is due (only one order's, with `order_id`) until `deadline`; say on stderr (through
    the log) when mail cannot go out at all. `owner`: as for OutboxSender."""
    report = OutboxSender(settings, db, owner=owner).send_due(deadline=deadline, order_id=order_id)
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

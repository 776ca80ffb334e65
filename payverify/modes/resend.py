"""`payverify resend ORDER`: queue a completed order's confirmation again (the same tickets)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from payverify.config import Settings
from payverify.db import Database
from payverify.errors import DatabaseError, NotAllowed
from payverify.mail import outbox
from payverify.mail.kinds import CONFIRMATION
from payverify.mail.sender import INTERACTIVE_MAIL_SECONDS, SendReport, deliver
from payverify.models import COMPLETED, Order, OrderItem
from payverify.modes.check import resolve_order
from payverify.modes.runtime import Runtime
from payverify.orders import notices


@dataclass(frozen=True)
class Queued:
    outbox_id: int
    order_id: int
    order_number: str
    recipient: str


@dataclass(frozen=True)
class Resent:
    order_number: str
    recipient: str
    state: str  # the message's outbox status after the delivery, with its last error if any
    mail: SendReport


def resend(rt: Runtime, ref: str, to_address: str | None) -> Resent:
    """Queue the confirmation again and send it within INTERACTIVE_MAIL_SECONDS (else a later run does)."""
    with rt.database() as db, rt.presence("resend"):
        queued = queue_resend(rt.settings, db, ref, to_address)
        mail = deliver(rt.settings, db, order_id=queued.order_id, deadline=time.monotonic() + INTERACTIVE_MAIL_SECONDS,
                       owner=rt.lease_owner)
        with db.transaction() as tx:
            row = tx.require_one("outbox_row_state", id=queued.outbox_id)
    state = row["status"] if not row["last_error"] else f"{row['status']} ({row['last_error']})"
    return Resent(order_number=queued.order_number, recipient=queued.recipient, state=state, mail=mail)


def queue_resend(settings: Settings, db: Database, ref: str, to_address: str | None) -> Queued:
    order_id = resolve_order(db, ref)
    with db.transaction() as tx:
        order = Order.from_row(tx.require_one("load_order", order_id=order_id))
        if order.status != COMPLETED:
            raise NotAllowed(f"order {order.order_number} is {order.status}: only a completed order's "
                             "confirmation can be sent again")
        items = [OrderItem.from_row(r) for r in tx.all("load_order_items", order_id=order_id)]
        context = notices.order_context(order, items)
        context.update(reason="sent again on request", new_status=order.status)
        recipient = to_address or order.email
        # No dedup key: every resend is a new message with its own Message-ID.
        outbox_id = outbox.queue(tx, settings, outbox.OutboxMessage(
            kind=CONFIRMATION, dedup_key=None, order_id=order_id, recipients=(recipient,), context=context))
        if outbox_id is None:  # not reached: only a dedup key makes queue() skip the insert
            raise DatabaseError("the outbox did not take the resent confirmation")
    return Queued(outbox_id=outbox_id, order_id=order_id, order_number=order.order_number, recipient=recipient)

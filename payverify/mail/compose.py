"""Outbox row -> the bytes SMTP carries: templates, attachments, MIME, flattened.

Pure CPU work on plain data (the row, its order's tickets and settings without secrets), with no
database or SMTP in reach, so it runs in the sending thread or in a worker process alike
(mail/compose_pool.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from payverify.config import Settings
from payverify.errors import ConfigError
from payverify.mail import message as mime
from payverify.mail.kinds import CONFIRMATION, REGISTRY
from payverify.mail.rows import OutgoingRow

if TYPE_CHECKING:
    from payverify.mail.render import Renderer


def compose(row: OutgoingRow, tickets: list[dict[str, Any]] | None, settings: Settings,
            renderer: Renderer) -> mime.Composed:
    """The message for one outbox row; `tickets` are its order's (a confirmation's), else None.
    Raises mime.BadAddress for an address no server would take, anything else for a template bug."""
    context = row.context
    kind = row.kind
    attachments: list[mime.Attachment] = []
    if kind == CONFIRMATION and tickets is not None:
        attachments = confirmation_attachments(context, tickets, settings)
    rendered = renderer.render(kind, context, tickets=tickets)
    customer = REGISTRY[kind].to_customer
    recipients = [mime.address(r, context.get("customer_name", "") if customer else "") for r in row.recipients]
    mail_from = settings.mail_from
    if mail_from is None:  # not reached: the sender sends nothing without it
        raise ConfigError("PAYVERIFY_MAIL_FROM is not set")
    sender = mime.sender_address(mail_from, settings.display_site_name)
    message = mime.build(rendered=rendered, sender=sender, recipients=recipients, message_id=row.message_id,
                         attachments=attachments, auto_generated=not customer)
    return mime.flatten(message, sender.addr_spec, [r.addr_spec for r in recipients])


def confirmation_attachments(context: dict[str, Any], tickets: list[dict[str, Any]],
                             settings: Settings) -> list[mime.Attachment]:
    from payverify.mail.calendar_entry import event_ics
    from payverify.mail.documents import EventInfo, TicketInfo
    from payverify.mail.ticket_pdf import tickets_pdf

    ev = context["event"]
    event = EventInfo(id=ev["id"], title=ev["title"], venue=ev["venue"],
                      starts_at=datetime.fromisoformat(ev["starts_at"]),
                      ends_at=datetime.fromisoformat(ev["ends_at"]) if ev.get("ends_at") else None)
    number = context["order_number"]
    pdf = tickets_pdf(event=event, order_number=number, site_name=settings.display_site_name,
                      timezone=settings.timezone,
                      tickets=[TicketInfo(code=t["code"], ticket_type=t["ticket_type"], holder_name=t["holder_name"])
                               for t in tickets])
    domain = (settings.mail_from or "").rpartition("@")[2].strip(" >") or "payverify.invalid"
    ics = event_ics(event=event, order_number=number, site_name=settings.display_site_name, domain=domain)
    safe_number = "".join(c for c in number if c.isalnum() or c in "-_")
    return [mime.Attachment(f"tickets-{safe_number}.pdf", pdf, "application", "pdf"),
            mime.Attachment("event.ics", ics, "text", "calendar", (("method", "PUBLISH"),))]

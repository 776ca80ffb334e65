"""Building the MIME message for an outbox row: multipart/alternative text + HTML, attachments.

Every header value that comes from customer or event data is stripped of control characters first,
and addresses go through `headerregistry.Address`, so nothing can inject a header.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from payverify.mail.render import CONTROL_CHARS, Rendered, clean_subject


class BadAddress(ValueError):
    """An address that cannot be used in a header (the row can never be sent)."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    maintype: str
    subtype: str
    params: tuple[tuple[str, str], ...] = ()


def address(addr_spec: str, display_name: str = "") -> Address:
    """An Address from untrusted text; BadAddress if it is not exactly one plain address."""
    if CONTROL_CHARS.search(addr_spec) or addr_spec.count("@") != 1 or any(c in addr_spec for c in '<>,;" '):
        raise BadAddress("not a single plain e-mail address")
    try:
        return Address(display_name=clean_subject(display_name, 100), addr_spec=addr_spec.strip())
    except (ValueError, IndexError) as exc:
        raise BadAddress(f"not a valid e-mail address ({type(exc).__name__})") from None


def sender_address(mail_from: str, site_name: str) -> Address:
    """PAYVERIFY_MAIL_FROM as `addr` or `Name <addr>`; the site's name is the default display name."""
    name, addr = parseaddr(mail_from)
    return address(addr, name or site_name)


def build(*, rendered: Rendered, sender: Address, recipients: list[Address], message_id: str,
          attachments: list[Attachment] = (), auto_generated: bool = False,
          now: datetime | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = clean_subject(rendered.subject)
    msg["From"] = sender
    msg["To"] = recipients
    msg["Date"] = format_datetime(now or datetime.now(timezone.utc))
    msg["Message-ID"] = message_id
    if auto_generated:
        msg["Auto-Submitted"] = "auto-generated"  # staff alerts: no auto-replies, no vacation loops
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    for item in attachments:
        msg.add_attachment(item.content, maintype=item.maintype, subtype=item.subtype,
                           filename=item.filename, params=dict(item.params))
    return msg

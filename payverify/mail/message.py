"""Building the MIME message for an outbox row: multipart/alternative text + HTML, attachments.

Every header value that comes from customer or event data is stripped of control characters first,
and addresses go through `headerregistry.Address`, so nothing can inject a header.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes
from email.generator import BytesGenerator
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from payverify.addresses import BadAddress, address, one_line, sender_address  # noqa: F401 - re-exported

if TYPE_CHECKING:  # the renderer pulls in Jinja2: only load it when a message is really rendered
    from payverify.mail.render import Rendered


class _ReusedHeaders(HeaderRegistry):
    """policy.default's headers, made for less: the stock registry creates a new class for every header
    it makes, and a message sets the same headers (From, MIME-Version, Content-Type, Content-Transfer-
    Encoding...) each time, every one a parse. Header objects are immutable strings, so each class is
    made once and the header for a recently seen (name, value) is reused."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}
        self._made = lru_cache(maxsize=256)(self._make)

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        if key not in self._classes:
            self._classes[key] = super().__getitem__(name)
        return self._classes[key]

    def _make(self, name: str, value: str | tuple[tuple[str, str, str], ...]) -> BaseHeader:
        if isinstance(value, tuple):
            return super().__call__(name, [Address(display_name=d, username=u, domain=h) for d, u, h in value])
        return super().__call__(name, value)

    def __call__(self, name: str, value: Any) -> BaseHeader:
        if isinstance(value, str):
            return self._made(name, value)
        addresses = [value] if isinstance(value, Address) else value
        if isinstance(addresses, list | tuple) and all(isinstance(a, Address) for a in addresses):
            # Address objects are not hashable: the key is what makes two of them equal.
            return self._made(name, tuple((a.display_name, a.username, a.domain) for a in addresses))
        return super().__call__(name, value)


# policy.default in every respect but the header factory above.
POLICY = default_policy.clone(header_factory=_ReusedHeaders())
UTF8_POLICY = POLICY.clone(utf8=True)  # headers written as UTF-8, for an SMTPUTF8 envelope


@dataclass(frozen=True)
class Composed:
    """A message ready for SMTP: its bytes and its envelope."""

    data: bytes
    sender: str
    recipients: tuple[str, ...]
    smtputf8: bool  # an envelope address is not ASCII: the server must offer SMTPUTF8


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    maintype: str
    subtype: str
    params: tuple[tuple[str, str], ...] = ()


def _header_safe(recipients: list[Address]) -> list[Address]:
    """The recipients, minus any display name that would not survive serialisation. Python's header
    folding (3.11) drops the quotes around a long display name, so a customer's name like
    "padding..., evil@example.org, x" would turn into extra addresses in the To header. Each address
    is written and parsed back; one that does not come back identical loses its display name."""
    safe = []
    for recipient in recipients:
        probe = EmailMessage(policy=POLICY)
        probe["To"] = recipient
        parsed = message_from_bytes(probe.as_bytes(), policy=POLICY)["To"].addresses
        safe.append(recipient if parsed == (recipient,) else Address(username=recipient.username,
                                                                     domain=recipient.domain))
    return safe


def build(*, rendered: Rendered, sender: Address, recipients: list[Address], message_id: str,
          attachments: Sequence[Attachment] = (), auto_generated: bool = False,
          now: datetime | None = None) -> EmailMessage:
    msg = EmailMessage(policy=POLICY)
    msg["Subject"] = one_line(rendered.subject)
    msg["From"] = sender
    msg["To"] = _header_safe(recipients)
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    msg["Message-ID"] = message_id
    if auto_generated:
        msg["Auto-Submitted"] = "auto-generated"  # staff alerts: no auto-replies, no vacation loops
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    for item in attachments:
        msg.add_attachment(item.content, maintype=item.maintype, subtype=item.subtype,
                           filename=item.filename, params=dict(item.params))
    return msg


def flatten(msg: EmailMessage, sender: str, recipients: list[str]) -> Composed:
    """The message as smtplib's send_message would write it to the wire (UTF-8 headers when the
    envelope needs SMTPUTF8), so the bytes can be made away from the SMTP session."""
    smtputf8 = not "".join([sender, *recipients]).isascii()
    with io.BytesIO() as out:
        BytesGenerator(out, policy=UTF8_POLICY if smtputf8 else msg.policy).flatten(msg, linesep="\r\n")
        return Composed(out.getvalue(), sender, tuple(recipients), smtputf8)

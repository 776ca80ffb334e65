"""Outbox rows as a settle queues them, without a database: for the render benchmark and the tests
of composing mail (in the sending thread or in a worker process)."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from payverify.config import Settings
from payverify.mail import outbox
from payverify.mail.kinds import CONFIRMATION
from payverify.mail.rows import OutgoingRow
from payverify.models import Order, OrderItem
from payverify.orders import decision, notices
from payverify.orders.tickets import CODE_BYTES
from payverify.sumup.answer import Answer, AnswerKind
from payverify.sumup.checkout import checkout_from_dict

SETTINGS = Settings(site_url="https://tickets.example.je", site_name="Jersey Live",
                    mail_from="Jersey Live <tickets@tickets.example.je>")
NOW = datetime(2026, 11, 26, 20, 0, tzinfo=UTC)


def confirmation_row(n: int, *, tickets: int = 1, email: str | None = None,
                     settings: Settings = SETTINGS) -> tuple[OutgoingRow, list[dict[str, Any]]]:
    """Outbox row n, a confirmation for a new order of `tickets` standing tickets, and those tickets,
    as the sender reads them: the context from the real decision table and `notices.messages_for`,
    through a JSON round trip like the jsonb column's; door codes like new_code()'s (32 URL-safe
    characters), the same on every run."""
    number = f"JE-{n:06d}"
    price = Decimal("22.50")
    order = Order(id=1000 + n, order_number=number, status="pending_verification",
                  email=email or f"fan{n}@example.com", first_name="Ann", last_name="Le Brocq",
                  total=price * tickets, currency="GBP", sumup_checkout_id=f"chk-{n}",
                  created_at=NOW - timedelta(minutes=10), updated_at=NOW - timedelta(minutes=1), event_id=7,
                  event_title="Harbour Lights", event_venue="Fort Regent, St Helier",
                  event_starts_at=NOW + timedelta(days=16), event_ends_at=NOW + timedelta(days=16, hours=3),
                  artist_id=3, artist_name="Lua Verde", artist_merchant_code="MH4H92C7", artist_uses_oauth=False)
    items = [OrderItem(id=n, ticket_type_id=11, ticket_type_name="Standing", quantity=tickets, unit_price=price)]
    checkout = checkout_from_dict({
        "id": f"chk-{n}", "checkout_reference": number, "amount": order.total, "currency": "GBP",
        "merchant_code": "MH4H92C7", "status": "PAID", "transaction_code": "TEENSK4W2K",
        "transactions": [{"id": "t1", "transaction_code": "TEENSK4W2K", "amount": order.total,
                          "currency": "GBP", "status": "SUCCESSFUL", "merchant_code": "MH4H92C7"}]})
    answer = Answer(kind=AnswerKind.CHECKOUT, http_status=200, checkout=checkout)
    verdict = decision.decide(order, items, answer, NOW, settings.policy)
    message, = (m for m in notices.messages_for(verdict, order, items, checkout, settings) if m.kind == CONFIRMATION)
    context = json.loads(json.dumps(message.context, default=outbox._json_default))
    row = OutgoingRow(id=n, kind=CONFIRMATION, order_id=order.id, recipients=tuple(message.recipients),
                      context=context, message_id=f"<order-confirmation.{n}@tickets.example.je>", attempts=1,
                      created_at=NOW, too_old=False)
    codes = [base64.urlsafe_b64encode(hashlib.sha256(f"{number}/{i}".encode()).digest()[:CODE_BYTES]).decode()
             for i in range(tickets)]
    return row, [{"code": code, "ticket_type": "Standing", "holder_name": order.holder_name} for code in codes]

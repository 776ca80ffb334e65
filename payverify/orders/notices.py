"""What an order's outcome tells people: the outbox messages a decision calls for, and the order and
checkout as the mail templates see them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from payverify.config import Settings
from payverify.mail.kinds import CONFIRMATION, REGISTRY
from payverify.mail.outbox import OutboxMessage
from payverify.models import Order, OrderItem
from payverify.orders.decision import Decision
from payverify.orders.tickets import items_total
from payverify.sumup.checkout import Checkout


def order_context(order: Order, items: list[OrderItem]) -> dict[str, Any]:
    return {
        "order_id": order.id, "order_number": order.order_number,
        "customer_name": order.holder_name, "total": order.total, "currency": order.currency,
        "status": order.status, "checkout_id": order.sumup_checkout_id,
        "event": {"id": order.event_id, "title": order.event_title, "venue": order.event_venue,
                  "starts_at": order.event_starts_at, "ends_at": order.event_ends_at},
        "artist": {"id": order.artist_id, "name": order.artist_name},
        "items": [{"ticket_type": i.ticket_type_name, "quantity": i.quantity, "unit_price": i.unit_price}
                  for i in items],
    }


def checkout_context(checkout: Checkout | None) -> dict[str, Any] | None:
    if checkout is None:
        return None
    return {
        "id": checkout.id, "status": checkout.status, "amount": checkout.amount,
        "currency": checkout.currency, "merchant_code": checkout.merchant_code,
        "checkout_reference": checkout.checkout_reference, "transaction_code": checkout.transaction_code,
        "transactions": [{"status": t.status, "amount": t.amount, "currency": t.currency,
                          "merchant_code": t.merchant_code, "transaction_code": t.transaction_code}
                         for t in checkout.transactions],
    }


def messages_for(decision: Decision, order: Order, items: list[OrderItem], checkout: Checkout | None,
                 settings: Settings, *, ticket_clock_started_at: datetime | None = None) -> list[OutboxMessage]:
    """The outbox rows an outcome calls for (customer mail and staff alerts); the confirmation
    carries the start of the order's time to ticket."""
    base = order_context(order, items)
    base["reason"] = decision.reason
    base["new_status"] = decision.new_status
    messages = []
    for kind in decision.notify:
        context = dict(base)
        recipients: tuple[str, ...]
        if REGISTRY[kind].to_customer:
            recipients = (order.email,)
        else:
            recipients = settings.alert_recipients
            context["expected"] = {"amount": order.total, "currency": order.currency,
                                   "merchant_code": order.artist_merchant_code,
                                   "checkout_reference": order.order_number,
                                   "checkout_id": order.sumup_checkout_id,
                                   "items_total": items_total(items)}  # what the tickets would be for
            context["received"] = checkout_context(checkout)
        messages.append(OutboxMessage(kind=kind, dedup_key=REGISTRY[kind].key(order.id), order_id=order.id,
                                      recipients=recipients, context=context,
                                      ticket_clock_started_at=ticket_clock_started_at if kind == CONFIRMATION
                                      else None))
    return messages

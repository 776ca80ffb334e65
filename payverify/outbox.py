"""Queueing mail and alerts in payverify_outbox, inside the caller's transaction.

Rows are written in the same transaction as the outcome that calls for them, so a settled order
never lacks its mail and a rolled-back settle never leaves one. Sending is a separate step.
Alerts are de-duplicated by key: one per order per kind, one per artist for a revoked connection, one
per error streak of an order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from email.utils import make_msgid
from typing import Any

from payverify import decision as d
from payverify.config import Settings
from payverify.db import Tx
from payverify.models import Order, OrderItem
from payverify.sumup.checkout import Checkout

ALERT_RECONNECT = "admin_alert_reconnect_sumup"
ALERT_ORDER_ERROR = "admin_alert_order_error"
# Erroring attempts in a row before staff hear of it: one is noise (a restart, a lock timeout), three
# is a quarter of an hour of cron runs and a pattern.
ORDER_ERROR_ALERT_RUNS = 3
CUSTOMER_KINDS = frozenset({d.CONFIRMATION, d.PAYMENT_FAILED})


@dataclass(frozen=True)
class OutboxMessage:
    kind: str
    dedup_key: str | None
    order_id: int | None
    recipients: tuple[str, ...]
    context: dict[str, Any]


def _json_default(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in an outbox context")


def _mail_domain(settings: Settings) -> str:
    sender = settings.mail_from or ""
    domain = sender.rpartition("@")[2].strip(" >")
    return domain or "payverify.invalid"


def queue(tx: Tx, settings: Settings, message: OutboxMessage) -> int | None:
    """Insert one outbox row; its id, or None when its dedup key was already queued."""
    row = tx.one(
        "insert_outbox", kind=message.kind, dedup_key=message.dedup_key, order_id=message.order_id,
        recipients=list(message.recipients),
        context=json.dumps(message.context, default=_json_default, sort_keys=True),
        message_id=make_msgid(idstring=message.kind.replace("_", "-"), domain=_mail_domain(settings)))
    return row["id"] if row is not None else None


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


def messages_for(decision: d.Decision, order: Order, items: list[OrderItem], checkout: Checkout | None,
                 settings: Settings) -> list[OutboxMessage]:
    """The outbox rows an outcome calls for (customer mail and staff alerts)."""
    base = order_context(order, items)
    base["reason"] = decision.reason
    base["new_status"] = decision.new_status
    messages = []
    for kind in decision.notify:
        context = dict(base)
        if kind in CUSTOMER_KINDS:
            recipients = (order.email,)
        else:
            recipients = settings.alert_recipients
            context["expected"] = {"amount": order.total, "currency": order.currency,
                                   "merchant_code": order.artist_merchant_code,
                                   "checkout_reference": order.order_number,
                                   "checkout_id": order.sumup_checkout_id}
            context["received"] = checkout_context(checkout)
        messages.append(OutboxMessage(kind=kind, dedup_key=f"{kind}:order:{order.id}", order_id=order.id,
                                      recipients=recipients, context=context))
    return messages


def reconnect_key(artist_id: int | None) -> str:
    return f"{ALERT_RECONNECT}:artist:{artist_id}" if artist_id is not None else f"{ALERT_RECONNECT}:platform"


def reconnect_alert(artist_id: int | None, artist_name: str, problem: str, settings: Settings) -> OutboxMessage:
    """SumUp refused an artist's credentials (or the platform key, artist_id None): one alert until
    they work again (verify.py re-arms the key on the first accepted request)."""
    return OutboxMessage(kind=ALERT_RECONNECT, dedup_key=reconnect_key(artist_id),
                         order_id=None, recipients=settings.alert_recipients,
                         context={"artist": {"id": artist_id, "name": artist_name}, "problem": problem})


def order_error_key(order_id: int) -> str:
    return f"{ALERT_ORDER_ERROR}:order:{order_id}"


def order_error_alert(order_id: int, order_number: str | None, error: str, since: datetime, runs: int,
                      settings: Settings) -> OutboxMessage:
    """An order's verification errored `runs` times in a row since `since`: one alert until it is
    verified again (settle.record re-arms the key). `error` is already safe and one line."""
    return OutboxMessage(kind=ALERT_ORDER_ERROR, dedup_key=order_error_key(order_id), order_id=order_id,
                         recipients=settings.alert_recipients,
                         context={"order_id": order_id, "order_number": order_number, "error": error,
                                  "since": since, "runs": runs})

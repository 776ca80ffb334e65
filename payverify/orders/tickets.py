"""Ticket rows for a paid order: one per admission, each with an unguessable door code."""

from __future__ import annotations

import secrets
from typing import Any

from payverify.models import Order, OrderItem

# 24 random bytes -> 32 URL-safe characters: 192 bits, far beyond guessing at the door.
CODE_BYTES = 24


def new_code() -> str:
    return secrets.token_urlsafe(CODE_BYTES)


def ticket_rows(order: Order, items: list[OrderItem]) -> list[dict[str, Any]]:
    return [
        {"order_id": order.id, "order_item_id": item.id, "event_id": order.event_id,
         "ticket_type_id": item.ticket_type_id, "code": new_code(), "holder_name": order.holder_name}
        for item in items
        for _ in range(item.quantity)
    ]


def admissions(items: list[OrderItem]) -> int:
    return sum(item.quantity for item in items)

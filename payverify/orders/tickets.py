"""Ticket rows for a paid order: one per admission, each with an unguessable door code; and which
items tickets may be issued for at all."""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import Any

from payverify.models import Order, OrderItem

# 24 random bytes -> 32 URL-safe characters: 192 bits, far beyond guessing at the door.
CODE_BYTES = 24

# Bounds on what one paid order may issue. An online ticket order is a handful of admissions; a
# quantity beyond these is a site bug or an edited row (a price typed into the quantity), not a sale,
# and issuing it would write that many tickets in the settle transaction and render that many PDF
# pages into one confirmation (500 is what tests/integration/test_hostile_data.py proves works).
MAX_ITEM_QUANTITY = 100
MAX_ADMISSIONS = 500


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


def items_total(items: list[OrderItem]) -> Decimal:
    """What the items add up to: the sum of quantity x unit price, exactly (Decimal)."""
    return sum((item.unit_price * item.quantity for item in items), Decimal(0))


def item_problems(items: list[OrderItem]) -> list[str]:
    """Every reason these items cannot be issued as tickets (empty: they can), whatever was paid."""
    if not items:
        return ["the order has no items"]
    problems = []
    for item in items:
        if not 1 <= item.quantity <= MAX_ITEM_QUANTITY:
            problems.append(f"item {item.id} has a quantity of {item.quantity}, outside 1..{MAX_ITEM_QUANTITY}")
        # Not negative: a negative line would let more admissions add up to what was paid. (Postgres'
        # numeric also holds NaN, which no comparison may meet unchecked.)
        if not item.unit_price.is_finite() or item.unit_price < 0:
            problems.append(f"item {item.id} has a unit price of {item.unit_price}")
    if not problems and admissions(items) > MAX_ADMISSIONS:
        problems.append(f"the items are {admissions(items)} admissions, over {MAX_ADMISSIONS} per order")
    return problems

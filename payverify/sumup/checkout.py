"""SumUp's checkout object as payverify reads it: tolerant of missing and extra fields, strict on types.

A field that is present with the wrong type, or a field the decision needs that is missing, makes the
whole body "not understood" (BodyNotUnderstood): the order is left as it is and retried later.
Statuses are open enums: an unknown string is kept as data, never mapped to "not paid".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from payverify.sumup import body
from payverify.sumup.body import NotJSON

# Checkout statuses SumUp documents; anything else is kept verbatim and treated as unknown.
PAID, PENDING, FAILED, EXPIRED = "PAID", "PENDING", "FAILED", "EXPIRED"
KNOWN_STATUSES = frozenset({PAID, PENDING, FAILED, EXPIRED})

# Transaction statuses that matter to the decision.
SUCCESSFUL = "SUCCESSFUL"
REVERSED_TRANSACTION_STATUSES = frozenset({"REFUNDED", "CHARGE_BACK", "CHARGEBACK"})


# A checkout id payverify will ask SumUp about. SumUp's ids are UUIDs in its examples; any short run of
# letters, digits, "-" and "_" is accepted, so another id format is not refused, while dot segments,
# slashes, whitespace, control characters and escapes never reach a URL path.
_PLAUSIBLE_CHECKOUT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def plausible_checkout_id(checkout_id: str) -> bool:
    """Whether `checkout_id` could be one of SumUp's checkout ids (1-64 of A-Z, a-z, 0-9, '-', '_')."""
    return _PLAUSIBLE_CHECKOUT_ID.fullmatch(checkout_id) is not None


class BodyNotUnderstood(ValueError):
    """The body is not a checkout payverify can reason about (not JSON, wrong types, ...)."""


@dataclass(frozen=True, kw_only=True)
class Transaction:
    id: str | None
    transaction_code: str | None
    amount: Decimal | None
    currency: str | None
    status: str | None
    merchant_code: str | None
    timestamp: datetime | None  # when SumUp recorded it; None when absent or not a time with a zone


@dataclass(frozen=True, kw_only=True)
class Checkout:
    id: str | None
    checkout_reference: str | None
    amount: Decimal | None
    currency: str | None
    merchant_code: str | None
    status: str
    transaction_code: str | None
    transaction_id: str | None
    transactions: tuple[Transaction, ...]

    @property
    def successful_transactions(self) -> tuple[Transaction, ...]:
        return tuple(t for t in self.transactions if t.status == SUCCESSFUL)

    @property
    def reversed_transactions(self) -> tuple[Transaction, ...]:
        return tuple(t for t in self.transactions if t.status in REVERSED_TRANSACTION_STATUSES)

    @property
    def payment(self) -> Transaction | None:
        """The successful transaction: the one the checkout's transaction_code names, else the first."""
        successful = self.successful_transactions
        named = next((t for t in successful if self.transaction_code and t.transaction_code == self.transaction_code),
                     None)
        return named or (successful[0] if successful else None)


def parse_checkout(text: str) -> Checkout:
    """Parse a checkout body (payverify.sumup.body: amounts Decimal, never float). Raises BodyNotUnderstood."""
    try:
        data = body.loads_object(text)
    except NotJSON as exc:
        raise BodyNotUnderstood(str(exc)) from None
    return checkout_from_dict(data)


def checkout_from_dict(data: dict[str, Any]) -> Checkout:
    status = _text(data, "status")
    if status is None:
        raise BodyNotUnderstood("checkout has no status")
    raw_transactions = data.get("transactions")
    if raw_transactions is None:
        raw_transactions = []
    if not isinstance(raw_transactions, list):
        raise BodyNotUnderstood("checkout transactions is not a list")
    transactions = tuple(_transaction(t) for t in raw_transactions)
    return Checkout(
        id=_text(data, "id"),
        checkout_reference=_text(data, "checkout_reference"),
        amount=_amount(data, "amount"),
        currency=_currency(data),
        merchant_code=_text(data, "merchant_code"),
        status=status,
        transaction_code=_text(data, "transaction_code"),
        transaction_id=_text(data, "transaction_id"),
        transactions=transactions,
    )


def _transaction(data: Any) -> Transaction:
    if not isinstance(data, dict):
        raise BodyNotUnderstood("a checkout transaction is not an object")
    return Transaction(
        id=_text(data, "id"),
        transaction_code=_text(data, "transaction_code"),
        amount=_amount(data, "amount"),
        currency=_currency(data),
        status=_text(data, "status"),
        merchant_code=_text(data, "merchant_code"),
        # Lenient, unlike the fields around it: the decision never reads it (it only times the
        # confirmation mail), so a bad one must not hold up a paid order.
        timestamp=body.timestamp(data.get("timestamp")),
    )


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BodyNotUnderstood(f"{key} is not a string")
    return value


def _currency(data: dict[str, Any]) -> str | None:
    value = _text(data, "currency")
    return value.upper() if value is not None else None


def _amount(data: dict[str, Any], key: str) -> Decimal | None:
    # Absent: None (missing_paid_fields decides whether that matters). Present but not an amount (a
    # string, a bool, NaN, absurd): the body is not understood.
    value = data.get(key)
    if value is None:
        return None
    parsed = body.amount(value)
    if parsed is None:
        raise BodyNotUnderstood(f"{key} is not a plausible amount")
    return parsed

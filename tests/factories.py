"""The one place tests build payverify's in-memory models and SumUp bodies from.

Every default describes the same good order: JE-7F3K2Q, 25.00 GBP, paid into MH4H92C7, ten minutes
old at NOW (paid at SumUp and marked pending_verification by the site eight minutes before NOW), for an
event three days after NOW. A test names only what it changes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from payverify.models import Order, OrderItem
from payverify.sumup.answer import Answer, AnswerKind
from payverify.sumup.checkout import checkout_from_dict

NOW = datetime(2026, 11, 26, 20, 0, tzinfo=UTC)
CHECKOUT_ID = "4e425463-3e1b-431d-83fa-1e51c2925e99"
NUMBER = "JE-7F3K2Q"
MERCHANT = "MH4H92C7"
TRANSACTION_CODE = "TEENSK4W2K"
PAID_AT_SUMUP = "2026-11-26T19:51:30.250Z"  # the SUCCESSFUL transaction's timestamp, as SumUp writes it


def make_order(**overrides: Any) -> Order:
    """A pending_verification order that a matching PAID answer completes; `overrides` replace fields."""
    values: dict[str, Any] = dict(
        id=7, order_number=NUMBER, status="pending_verification", email="fan@example.com",
        first_name="Alex", last_name="Morgan", total=Decimal("25.00"), currency="GBP",
        sumup_checkout_id=CHECKOUT_ID, created_at=NOW - timedelta(minutes=10),
        updated_at=NOW - timedelta(minutes=8), event_id=3,
        event_title="Harbour Lights", event_venue="Fort Regent", event_starts_at=NOW + timedelta(days=3),
        event_ends_at=NOW + timedelta(days=3, hours=3), artist_id=1, artist_name="Lua Verde",
        artist_merchant_code=MERCHANT, artist_uses_oauth=False)
    return Order(**(values | overrides))


def make_item(**overrides: Any) -> OrderItem:
    values: dict[str, Any] = dict(id=1, ticket_type_id=11, ticket_type_name="Standing", quantity=1,
                                  unit_price=Decimal("25.00"))
    return OrderItem(**(values | overrides))


def transaction(amount: Decimal = Decimal("25.0"), **overrides: Any) -> dict[str, Any]:
    """One SUCCESSFUL transaction of the good order's checkout, as SumUp lists it."""
    return {"id": "t1", "transaction_code": TRANSACTION_CODE, "amount": amount, "currency": "GBP",
            "timestamp": PAID_AT_SUMUP, "status": "SUCCESSFUL", "merchant_code": MERCHANT} | overrides


def checkout_body(status: str = "PAID", **overrides: Any) -> dict[str, Any]:
    """SumUp's checkout for the good order (money already Decimal, as the client parses it)."""
    data: dict[str, Any] = {"id": CHECKOUT_ID, "checkout_reference": NUMBER, "amount": Decimal("25.0"),
                            "currency": "GBP", "merchant_code": MERCHANT, "status": status}
    if status == "PAID":
        data["transaction_code"] = TRANSACTION_CODE
        data["transactions"] = [transaction()]
    return data | overrides


def checkout_answer(status: str = "PAID", **overrides: Any) -> Answer:
    """SumUp's definitive answer with `checkout_body(status, **overrides)`."""
    return Answer(kind=AnswerKind.CHECKOUT, http_status=200,
                  checkout=checkout_from_dict(checkout_body(status, **overrides)))

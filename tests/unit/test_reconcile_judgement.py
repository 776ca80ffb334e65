"""Reconciliation's judgement (payverify/orders/reconcile.py): each finding, its stable key,
what is never one, and the day's totals."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payverify.money import format_amount, minor_units, quantize
from payverify.orders import reconcile as r
from payverify.sumup.history import HistoryItem

MERCHANT = "MH4H92C7"
PAID_AT = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)


def item(**overrides) -> HistoryItem:
    fields = {"id": "t-1", "transaction_code": "TEENSK4W2K", "amount": Decimal("25.00"), "currency": "GBP",
              "status": "SUCCESSFUL", "type": "PAYMENT", "payment_type": "ECOM", "timestamp": PAID_AT,
              "refunded_amount": None}
    return HistoryItem(**{**fields, **overrides})


def order(**overrides) -> r.ReconciledOrder:
    fields = {"id": 42, "order_number": "JE-7F3K2Q", "status": "completed", "total": Decimal("25.00"),
              "currency": "GBP", "merchant_code": MERCHANT, "transaction_code": "TEENSK4W2K", "paid_at": PAID_AT}
    return r.ReconciledOrder(**{**fields, **overrides})


def test_a_payment_that_matches_its_order_is_counted_not_reported():
    assert r.judge_completed(item(), order(), MERCHANT) == []
    assert r.judge_completed(item(amount=Decimal("25")), order(), MERCHANT) == []  # 25 and 25.00 are equal
    assert r.judge_completed(item(currency="gbp"), order(), MERCHANT) == []


def test_a_refund_after_completion_is_reported_with_its_amount():
    (full,) = r.judge_completed(item(status="REFUNDED", refunded_amount=Decimal("25.00")), order(), MERCHANT)
    assert full.finding == r.REFUNDED
    assert (full.order_number, full.order_status, full.transaction_code, full.amount, full.currency) == \
           ("JE-7F3K2Q", "completed", "TEENSK4W2K", Decimal("25.00"), "GBP")
    assert "refunded" in full.detail and "JE-7F3K2Q" in full.detail
    (partial,) = r.judge_completed(item(refunded_amount=Decimal("10.00")), order(), MERCHANT)  # still SUCCESSFUL
    assert partial.finding == r.REFUNDED
    assert "10.00 GBP of 25.00 GBP" in partial.detail
    # A partial refund that later becomes a full one is a new fact: another key.
    assert partial.key != full.key
    again = r.judge_completed(item(refunded_amount=Decimal("10.00")), order(), MERCHANT)
    assert [d.key for d in again] == [partial.key]


def test_a_refunds_key_does_not_depend_on_how_sumup_writes_the_number():
    (short,) = r.judge_completed(item(refunded_amount=Decimal("12.5")), order(), MERCHANT)
    (long,) = r.judge_completed(item(refunded_amount=Decimal("12.50")), order(), MERCHANT)
    assert short.key == long.key
    (no_amount,) = r.judge_completed(item(status="REFUNDED"), order(), MERCHANT)  # refunded_amount left out
    (with_amount,) = r.judge_completed(item(status="REFUNDED", refunded_amount=Decimal("25.0")), order(), MERCHANT)
    assert no_amount.key == with_amount.key


def test_a_chargeback_after_completion_is_reported():
    (chargeback,) = r.judge_completed(item(status="CHARGE_BACK"), order(), MERCHANT)
    assert chargeback.finding == r.CHARGEBACK and chargeback.sumup_status == "CHARGE_BACK"
    assert chargeback.key == f"{r.CHARGEBACK}:{MERCHANT}:TEENSK4W2K"


@pytest.mark.parametrize("overrides", [{"amount": Decimal("20.00")}, {"currency": "EUR"}, {"amount": None},
                                       {"currency": None}])
def test_a_different_amount_or_currency_is_reported(overrides):
    (differs,) = r.judge_completed(item(**overrides), order(), MERCHANT)
    assert differs.finding == r.AMOUNT_DIFFERS
    assert "25.00 GBP" in differs.detail


def test_a_refunded_payment_of_another_amount_is_both():
    refunded = item(status="REFUNDED", amount=Decimal("5.00"))
    findings = [d.finding for d in r.judge_completed(refunded, order(), MERCHANT)]
    assert findings == [r.REFUNDED, r.AMOUNT_DIFFERS]


def test_a_payment_without_a_completed_order_names_the_order_whose_checkout_lists_it():
    owner = order(status="failed", transaction_code=None)
    found = r.paid_without_order(item(), MERCHANT, owner)
    assert (found.finding, found.order_number, found.order_status) == (r.PAID_WITHOUT_ORDER, "JE-7F3K2Q", "failed")
    assert "failed" in found.detail and "no tickets" in found.detail
    alone = r.paid_without_order(item(), MERCHANT, None)
    assert (alone.order_number, alone.order_status) == (None, None)
    assert "no order was found" in alone.detail
    assert alone.key == found.key == f"{r.PAID_WITHOUT_ORDER}:{MERCHANT}:TEENSK4W2K"


@pytest.mark.parametrize("status", ["FAILED", "CANCELLED", "PENDING"])
def test_a_completed_order_whose_transaction_took_no_money_is_without_payment(status):
    (found,) = r.judge_completed(item(status=status), order(), MERCHANT)
    assert (found.finding, found.key, found.sumup_status) == (r.COMPLETED_WITHOUT_PAYMENT,
                                                           f"{r.COMPLETED_WITHOUT_PAYMENT}:order:42", status)
    assert status in found.detail


def test_a_completed_order_without_payment_is_keyed_by_the_order():
    missing = r.completed_without_payment(order())
    assert missing.finding == r.COMPLETED_WITHOUT_PAYMENT and missing.key == f"{r.COMPLETED_WITHOUT_PAYMENT}:order:42"
    assert "TEENSK4W2K" in missing.detail
    no_code = r.completed_without_payment(order(transaction_code=None))
    assert "no SumUp transaction code" in no_code.detail


@pytest.mark.parametrize("overrides", [{"payment_type": "POS"}, {"payment_type": "CASH"}, {"type": "REFUND"},
                                       {"type": "CHARGE_BACK"}, {"payment_type": None}])
def test_only_online_payments_can_be_ticket_orders(overrides):
    assert not r.is_ticket_payment(item(**overrides))
    totals = r.Totals(zone=ZoneInfo("Europe/Jersey"))
    totals.payment(MERCHANT, item(**overrides))
    assert totals.days() == [] and sum(totals.other.values()) == 1


def test_totals_per_merchant_local_day_and_currency():
    totals = r.Totals(zone=ZoneInfo("Europe/Paris"))  # 23:30 UTC on 30 November is 00:30 on 1 December there
    totals.payment(MERCHANT, item())
    totals.payment(MERCHANT, item(transaction_code="T2", amount=Decimal("10.10")))
    totals.payment(MERCHANT, item(transaction_code="T3", status="FAILED"))  # not takings
    totals.payment(MERCHANT, item(transaction_code="T4", currency="EUR", amount=Decimal("7.00")))
    totals.order(order(), on=PAID_AT)
    totals.order(order(id=43, total=Decimal("12.00")), on=datetime(2026, 12, 1, 12, 0, tzinfo=UTC))
    totals.order(order(id=44), on=None)  # no payment known: not on any day
    assert totals.days() == [
        (MERCHANT, date(2026, 12, 1), "EUR", Decimal("7.00"), Decimal(0)),
        (MERCHANT, date(2026, 12, 1), "GBP", Decimal("35.10"), Decimal("37.00")),
    ]
    assert totals.by_currency() == {"EUR": (Decimal("7.00"), Decimal(0)), "GBP": (Decimal("35.10"), Decimal("37.00"))}


# Every exponent SumUp's currencies have: 2 (GBP, EUR), 0 (JPY, and HUF as SumUp treats it), 3 (KWD, BHD).
CURRENCIES = ["GBP", "EUR", "JPY", "HUF", "KWD", "BHD"]


@st.composite
def refunds(draw):
    """(currency, the payment, the refunded amount as SumUp may write it, the refunded amount, status):
    any positive refund up to the whole payment, in the currency's minor units."""
    currency = draw(st.sampled_from(CURRENCIES))
    unit = Decimal(1).scaleb(-minor_units(currency))
    paid_units = draw(st.integers(min_value=1, max_value=10**8))
    refunded = draw(st.integers(min_value=1, max_value=paid_units)) * unit
    written = draw(st.sampled_from([refunded, refunded.quantize(unit / 100), _short(refunded)]))
    # A partial refund leaves the payment SUCCESSFUL; a full one may say REFUNDED or not (yet).
    status = draw(st.sampled_from(["SUCCESSFUL", "REFUNDED"]))
    return currency, paid_units * unit, written, refunded, status


def _short(amount: Decimal) -> Decimal:
    """As a JSON number may carry it: no trailing zeros after the point (12.5 for 12.50)."""
    text = format(amount, "f")
    return Decimal(text.rstrip("0").rstrip(".")) if "." in text else amount


@given(refunds())
def test_any_positive_refund_of_a_completed_orders_payment_is_reported(case):
    currency, paid, written, refunded, status = case
    found = r.judge_completed(item(amount=paid, currency=currency, status=status, refunded_amount=written),
                              order(total=paid, currency=currency), MERCHANT)
    (refund,) = found  # the amounts agree: nothing else to say
    assert refund.finding == r.REFUNDED
    assert refund.key == f"{r.REFUNDED}:{MERCHANT}:TEENSK4W2K:{quantize(refunded, currency)}"
    assert (refund.order_number, refund.amount, refund.currency) == ("JE-7F3K2Q", paid, currency)
    if refunded < paid:
        assert f"{format_amount(refunded, currency)} of {format_amount(paid, currency)} was refunded" in refund.detail
    else:
        assert f"the payment of {format_amount(paid, currency)} was refunded" in refund.detail


RESCUE_SINCE = PAID_AT - timedelta(hours=24)


@pytest.mark.parametrize(("status", "created", "settles"), [
    ("pending", RESCUE_SINCE - timedelta(days=3), True),  # a sweep looks at these whatever their age
    ("pending_verification", RESCUE_SINCE - timedelta(days=3), True),
    ("failed", RESCUE_SINCE + timedelta(minutes=1), True),  # rescued while in the window
    ("expired", RESCUE_SINCE, True),
    ("failed", RESCUE_SINCE - timedelta(minutes=1), False),
    ("expired", RESCUE_SINCE - timedelta(hours=1), False),
    ("expired", None, False),
    ("cancelled", PAID_AT, False),
    ("refunded", PAID_AT, False),
    ("requires_manual_review", PAID_AT, False),
    ("completed", PAID_AT, False),
])
def test_a_sweep_settles_only_orders_awaiting_payment_or_in_the_rescue_window(status, created, settles):
    assert r.sweep_may_settle(order(status=status, created_at=created), RESCUE_SINCE) is settles


def test_a_young_payment_waits_only_for_an_order_a_sweep_will_settle():
    young, old = PAID_AT, RESCUE_SINCE - timedelta(seconds=1)
    awaiting, cancelled = order(status="pending_verification", created_at=PAID_AT), order(status="cancelled")
    assert r.waits_for_a_sweep(young, awaiting, RESCUE_SINCE, owner_unsure=False)
    assert not r.waits_for_a_sweep(young, cancelled, RESCUE_SINCE, owner_unsure=False)
    assert not r.waits_for_a_sweep(young, None, RESCUE_SINCE, owner_unsure=False)  # nobody's: at once
    # Whose it is could not be told (SumUp did not answer for a checkout, more candidates than asked):
    # it waits, as for an order a sweep may settle, until it is older than the rescue window.
    assert r.waits_for_a_sweep(young, None, RESCUE_SINCE, owner_unsure=True)
    for owner in (awaiting, cancelled, None):
        assert not r.waits_for_a_sweep(old, owner, RESCUE_SINCE, owner_unsure=True)

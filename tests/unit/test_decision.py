"""The decision table of DESIGN.md, row by row, as a pure function."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from payverify.config import Policy
from payverify.models import OrderItem
from payverify.orders import decision as d
from payverify.sumup.answer import Answer, AnswerKind
from payverify.sumup.checkout import checkout_from_dict
from tests.factories import NOW, checkout_answer, checkout_body, make_item, make_order

POLICY = Policy()
answer = checkout_answer
ITEMS = [make_item()]  # the good order's one admission of 25.00


UNKNOWN = Answer.unknown("SumUp unavailable: timed out after 3 attempts", failure="timeout", transport_failure=True)
NOT_FOUND = Answer(kind=AnswerKind.NOT_FOUND, http_status=404, reason="404")
AWAITING = ["pending", "pending_verification"]
RESCUE = ["failed", "expired"]


@pytest.mark.parametrize("status", AWAITING + RESCUE)
def test_unknown_answer_changes_nothing(status):
    """Unreachable/timeout/5xx/429/401/not understood: no change, in either column."""
    result = d.decide(make_order(status=status), ITEMS, UNKNOWN, NOW, POLICY)
    assert result.new_status is None and not result.notify and not result.issue_tickets


@pytest.mark.parametrize("status", AWAITING)
def test_not_found_goes_to_review_with_alert(status):
    """404 on an awaiting order: requires_manual_review plus an alert."""
    result = d.decide(make_order(status=status), ITEMS, NOT_FOUND, NOW, POLICY)
    assert result.new_status == "requires_manual_review"
    assert result.notify == (d.ALERT_REVIEW,)


@pytest.mark.parametrize("status", RESCUE)
def test_not_found_leaves_rescue_orders(status):
    """404 on a failed/expired order: no change."""
    assert d.decide(make_order(status=status), ITEMS, NOT_FOUND, NOW, POLICY).new_status is None


@pytest.mark.parametrize("status", AWAITING)
def test_paid_and_matching_completes_with_tickets_and_mail(status):
    """PAID, everything matches: completed, tickets, confirmation mail."""
    result = d.decide(make_order(status=status), ITEMS, answer(), NOW, POLICY)
    assert result.new_status == "completed"
    assert result.issue_tickets
    assert result.notify == (d.CONFIRMATION,)


@pytest.mark.parametrize("status", RESCUE)
def test_late_payment_in_rescue_window_completes_and_alerts(status):
    """PAID on a failed/expired order in the rescue window: completed, tickets, mail, late-payment alert."""
    order = make_order(status=status, created_at=NOW - timedelta(hours=5))
    result = d.decide(order, ITEMS, answer(), NOW, POLICY)
    assert result.new_status == "completed" and result.issue_tickets
    assert result.notify == (d.CONFIRMATION, d.ALERT_LATE_PAYMENT)


@pytest.mark.parametrize("status", RESCUE)
def test_rescue_window_is_bounded(status):
    """A failed/expired order older than the rescue window is never changed, even when PAID."""
    order = make_order(status=status, created_at=NOW - timedelta(hours=25))
    assert d.decide(order, ITEMS, answer(), NOW, POLICY).new_status is None


@pytest.mark.parametrize("status", AWAITING + RESCUE)
def test_paid_after_event_over_goes_to_review(status):
    """PAID but the event is over (ends_at, or starts_at when no end): review + alert."""
    over = make_order(status=status, event_starts_at=NOW - timedelta(hours=5), event_ends_at=NOW - timedelta(hours=1))
    result = d.decide(over, ITEMS, answer(), NOW, POLICY)
    assert result.new_status == "requires_manual_review" and result.notify == (d.ALERT_REVIEW,)
    no_end = make_order(status=status, event_starts_at=NOW - timedelta(minutes=1), event_ends_at=None)
    assert d.decide(no_end, ITEMS, answer(), NOW, POLICY).new_status == "requires_manual_review"


MISMATCHES = {
    "amount": dict(amount=Decimal("2.50"),
                   transactions=[{"status": "SUCCESSFUL", "amount": Decimal("2.50"), "currency": "GBP"}]),
    "currency": dict(currency="EUR"),
    "merchant": dict(merchant_code="MOTHER01"),
    "reference": dict(checkout_reference="JE-OTHER1"),
    "checkout id": dict(id="88fcf8de-304d-4820-8f1c-ec880290eb92"),
    "no successful transaction": dict(
        transactions=[{"status": "FAILED", "amount": Decimal("25.0"), "currency": "GBP"}]),
    "empty transactions": dict(transactions=[]),
    "refunded": dict(transactions=[
        {"status": "SUCCESSFUL", "amount": Decimal("25.0"), "currency": "GBP"},
        {"status": "REFUNDED", "amount": Decimal("25.0"), "currency": "GBP"}]),
    "charge back": dict(transactions=[
        {"status": "SUCCESSFUL", "amount": Decimal("25.0"), "currency": "GBP"},
        {"status": "CHARGE_BACK", "amount": Decimal("25.0"), "currency": "GBP"}]),
    "transaction of another amount": dict(transactions=[
        {"status": "SUCCESSFUL", "amount": Decimal("20.0"), "currency": "GBP"}]),
    "transaction of another merchant": dict(transactions=[
        {"status": "SUCCESSFUL", "amount": Decimal("25.0"), "currency": "GBP", "merchant_code": "MOTHER01"}]),
}


@pytest.mark.parametrize("status", AWAITING + RESCUE)
@pytest.mark.parametrize("case", sorted(MISMATCHES))
def test_paid_with_mismatch_goes_to_review(status, case):
    """PAID with any mismatch (amount, currency, merchant, reference, id, transactions): review + alert."""
    order = make_order(status=status, created_at=NOW - timedelta(hours=1))
    result = d.decide(order, ITEMS, answer(**MISMATCHES[case]), NOW, POLICY)
    assert result.new_status == "requires_manual_review", result.reason
    assert result.notify == (d.ALERT_REVIEW,)
    assert not result.issue_tickets


def item(quantity: int, unit_price: str, n: int = 1) -> OrderItem:
    return make_item(id=n, quantity=quantity, unit_price=Decimal(unit_price))


def paid_for(total: str) -> Answer:
    """PAID for `total` GBP, everything else matching the good order."""
    amount = Decimal(total)
    return answer(amount=amount, transactions=[{"status": "SUCCESSFUL", "amount": amount, "currency": "GBP"}])


@pytest.mark.parametrize("status", AWAITING + RESCUE)
def test_items_that_do_not_add_up_go_to_review(status):
    """Total 10.00, one item of 5 x 10.00, SumUp PAID 10.00: the tickets would be five, paid for one.
    Review + alert, no tickets, and the reason names what the items add up to and what was paid."""
    order = make_order(status=status, total=Decimal("10.00"), created_at=NOW - timedelta(hours=1))
    result = d.decide(order, [item(5, "10.00")], paid_for("10.00"), NOW, POLICY)
    assert result.new_status == "requires_manual_review" and result.notify == (d.ALERT_REVIEW,)
    assert not result.issue_tickets
    assert "the items add up to 50.00 GBP" in result.reason and "SumUp was paid 10.00 GBP" in result.reason


def test_items_are_added_exactly():
    """Items are summed as Decimal and compared exactly: 3 x 8.335 is 25.005, not an order of 25.00."""
    result = d.decide(make_order(), [item(3, "8.335")], answer(), NOW, POLICY)
    assert result.new_status == "requires_manual_review" and "the items add up to 25.005 GBP" in result.reason
    several = [item(2, "10.00"), item(1, "5.00", n=2), item(1, "0.00", n=3)]  # a free guest ticket is fine
    assert d.decide(make_order(), several, answer(), NOW, POLICY).new_status == "completed"


BAD_ITEMS = {  # each adds up to the order's 25.00: only the bound is broken (and the reason says which)
    "no items": ([], "the order has no items"),
    "quantity 0": ([item(0, "10.00"), item(1, "25.00", n=2)], "item 1 has a quantity of 0, outside 1..100"),
    "negative quantity": ([item(-1, "25.00"), item(2, "25.00", n=2)], "a quantity of -1"),
    "quantity over 100": ([item(101, "0.00"), item(1, "25.00", n=2)], "a quantity of 101"),
    "negative unit price": ([item(2, "25.00"), item(1, "-25.00", n=2)], "item 2 has a unit price of -25.00"),
    "unit price not a number": ([item(1, "NaN")], "a unit price of NaN"),
    "over 500 admissions": ([item(100, "0.05", n=n) for n in range(1, 6)] + [item(1, "0.00", n=6)],
                            "501 admissions, over 500"),
}


@pytest.mark.parametrize("status", AWAITING + RESCUE)
@pytest.mark.parametrize("case", sorted(BAD_ITEMS))
def test_items_out_of_bounds_go_to_review(status, case):
    """No items, a quantity outside 1..100, a negative (or NaN) unit price, or over 500 admissions:
    review + alert, no tickets, even when the items add up to what was paid."""
    items, why = BAD_ITEMS[case]
    order = make_order(status=status, created_at=NOW - timedelta(hours=1))
    result = d.decide(order, items, answer(), NOW, POLICY)
    assert result.new_status == "requires_manual_review", result.reason
    assert result.notify == (d.ALERT_REVIEW,) and not result.issue_tickets
    assert why in result.reason


def test_items_at_the_bounds_complete():
    """100 of one item, and 500 admissions in all, are still an order."""
    assert d.decide(make_order(), [item(100, "0.25")], answer(), NOW, POLICY).new_status == "completed"
    most = [item(100, "0.05", n=n) for n in range(1, 6)]
    assert d.decide(make_order(), most, answer(), NOW, POLICY).new_status == "completed"


@pytest.mark.parametrize("sumup_status, expected", [("FAILED", "failed"), ("EXPIRED", "expired"),
                                                    ("PENDING", "expired")])
def test_items_do_not_matter_when_not_paid(sumup_status, expected):
    """The items only decide whether tickets may be issued: a not-paid answer decides as before."""
    order = make_order(created_at=NOW - timedelta(hours=3))
    assert d.decide(order, [item(5, "10.00")], answer(sumup_status), NOW, POLICY).new_status == expected


def test_artist_without_merchant_code_is_never_paid():
    """No merchant code on the artist: the merchant cannot be checked, so the order goes to review."""
    result = d.decide(make_order(artist_merchant_code=None), ITEMS, answer(), NOW, POLICY)
    assert result.new_status == "requires_manual_review"


def test_amounts_compared_exactly():
    """25.0, 25 and 25.00 are the same amount; 25.01 and 24.995 are not (nothing is rounded first)."""
    for amount in (Decimal("25"), Decimal("25.0"), Decimal("25.000")):
        tx = [{"status": "SUCCESSFUL", "amount": amount, "currency": "GBP"}]
        result = d.decide(make_order(), ITEMS, answer(amount=amount, transactions=tx), NOW, POLICY)
        assert result.new_status == "completed"
    for amount in (Decimal("25.01"), Decimal("24.995")):
        tx = [{"status": "SUCCESSFUL", "amount": amount, "currency": "GBP"}]
        assert d.decide(make_order(), ITEMS, answer(amount=amount, transactions=tx), NOW, POLICY).new_status \
            == "requires_manual_review"


@pytest.mark.parametrize("missing", ["id", "checkout_reference", "amount", "currency", "merchant_code"])
def test_paid_with_missing_fields_changes_nothing(missing):
    """A PAID reply that lacks a field the check needs is not understood: no change."""
    data = checkout_body()
    del data[missing]
    not_understood = Answer(kind=AnswerKind.CHECKOUT, checkout=checkout_from_dict(data))
    result = d.decide(make_order(), ITEMS, not_understood, NOW, POLICY)
    assert result.new_status is None


def test_failed_within_grace_changes_nothing():
    """FAILED younger than the failed grace: the customer may still retry."""
    order = make_order(created_at=NOW - timedelta(minutes=29))
    assert d.decide(order, ITEMS, answer("FAILED"), NOW, POLICY).new_status is None


@pytest.mark.parametrize("status", AWAITING)
def test_failed_after_grace_fails_with_mail(status):
    """FAILED at or after the failed grace: failed + payment-failed mail."""
    order = make_order(status=status, created_at=NOW - timedelta(minutes=30))
    result = d.decide(order, ITEMS, answer("FAILED"), NOW, POLICY)
    assert result.new_status == "failed" and result.notify == (d.PAYMENT_FAILED,)


@pytest.mark.parametrize("status", AWAITING)
def test_expired_answer_expires(status):
    """EXPIRED: expired, whatever the order's age."""
    assert d.decide(make_order(status=status), ITEMS, answer("EXPIRED"), NOW, POLICY).new_status == "expired"


def test_pending_below_max_age_changes_nothing():
    """PENDING younger than max age: no change."""
    order = make_order(created_at=NOW - timedelta(hours=1, minutes=59))
    assert d.decide(order, ITEMS, answer("PENDING"), NOW, POLICY).new_status is None


def test_pending_at_max_age_expires():
    """PENDING at or beyond max age: expired (SumUp itself said not paid)."""
    order = make_order(created_at=NOW - timedelta(hours=2))
    result = d.decide(order, ITEMS, answer("PENDING"), NOW, POLICY)
    assert result.new_status == "expired" and not result.notify


def test_old_order_with_unknown_answer_is_never_expired():
    """A payment is never lost to the clock: without a definitive answer an old order stays."""
    order = make_order(created_at=NOW - timedelta(hours=20))
    assert d.decide(order, ITEMS, UNKNOWN, NOW, POLICY).new_status is None


@pytest.mark.parametrize("status", RESCUE)
@pytest.mark.parametrize("sumup_status", ["FAILED", "EXPIRED", "PENDING"])
def test_rescue_orders_change_only_when_paid(status, sumup_status):
    """failed/expired orders: any not-paid answer leaves them."""
    order = make_order(status=status, created_at=NOW - timedelta(hours=3))
    assert d.decide(order, ITEMS, answer(sumup_status), NOW, POLICY).new_status is None


@pytest.mark.parametrize("status", AWAITING)
def test_unknown_sumup_status_changes_nothing(status):
    """An unknown status string is data, never 'not paid'."""
    order = make_order(status=status, created_at=NOW - timedelta(hours=5))
    assert d.decide(order, ITEMS, answer("AUTHORIZED"), NOW, POLICY).new_status is None


@pytest.mark.parametrize("status", ["completed", "cancelled", "refunded", "requires_manual_review", "on_hold"])
def test_other_statuses_are_never_changed(status):
    """Orders in any other status (including ones payverify does not know) are never changed."""
    for a in (answer(), answer("FAILED"), answer("EXPIRED"), NOT_FOUND):
        order = make_order(status=status, created_at=NOW - timedelta(hours=5))
        assert d.decide(order, ITEMS, a, NOW, POLICY).new_status is None


def test_no_checkout_id_changes_nothing():
    """An order without a checkout id cannot be verified: no change."""
    assert d.decide(make_order(sumup_checkout_id=None), ITEMS, answer(), NOW, POLICY).new_status is None


@pytest.mark.parametrize("status", AWAITING)
def test_implausible_checkout_id_goes_to_review_with_alert(status):
    """An awaiting order whose checkout id cannot be a SumUp id ("../x") is not asked about and
    needs a person: requires_manual_review plus the review alert, whatever the (unknown) answer."""
    order = make_order(status=status, sumup_checkout_id="../x")
    not_asked = Answer.unknown("not asked", failure="not_understood")
    result = d.decide(order, ITEMS, not_asked, NOW, POLICY)
    assert result.new_status == "requires_manual_review"
    assert result.notify == (d.ALERT_REVIEW,)
    assert not result.issue_tickets


@pytest.mark.parametrize("status", RESCUE)
def test_implausible_checkout_id_leaves_rescue_orders(status):
    """A failed/expired order changes only when paid: an implausible checkout id leaves it alone."""
    order = make_order(status=status, sumup_checkout_id="../x")
    not_asked = Answer.unknown("not asked", failure="not_understood")
    assert d.decide(order, ITEMS, not_asked, NOW, POLICY).new_status is None


def test_not_paid_answer_about_another_checkout_changes_nothing():
    """EXPIRED for a different checkout id is not an answer about this order."""
    other = answer("EXPIRED", id="88fcf8de-304d-4820-8f1c-ec880290eb92")
    result = d.decide(make_order(), ITEMS, other, NOW, POLICY)
    assert result.new_status is None


def test_tunables_move_the_thresholds():
    """max age, failed grace and rescue window come from the policy."""
    policy = replace(POLICY, max_age_hours=1, failed_grace_minutes=5, rescue_hours=2)
    order = make_order(created_at=NOW - timedelta(minutes=61))
    assert d.decide(order, ITEMS, answer("PENDING"), NOW, policy).new_status == "expired"
    older = replace(order, created_at=NOW - timedelta(minutes=6))
    assert d.decide(older, ITEMS, answer("FAILED"), NOW, policy).new_status == "failed"
    late = make_order(status="expired", created_at=NOW - timedelta(hours=3))
    assert d.decide(late, ITEMS, answer(), NOW, policy).new_status is None


def test_since_widens_the_rescue_window():
    """`sweep --since T` rescues a failed order older than 24 h but created after T."""
    order = make_order(status="failed", created_at=NOW - timedelta(hours=40))
    wide = d.widen_rescue(POLICY, NOW - timedelta(hours=48), NOW)
    assert d.decide(order, ITEMS, answer(), NOW, wide).new_status == "completed"
    assert d.widen_rescue(POLICY, NOW - timedelta(hours=1), NOW).rescue_hours == POLICY.rescue_hours

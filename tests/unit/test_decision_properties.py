"""Property-based tests (hypothesis): the decision over random orders and answers, against an oracle
written independently from DESIGN.md. (The settle step under random concurrent verifies is in
tests/reliability/test_concurrent_settles.py.)"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from hypothesis import event, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from payverify import models
from payverify.config import Policy
from payverify.models import Order
from payverify.orders.decision import decide
from payverify.sumup.answer import Answer, AnswerKind
from payverify.sumup.checkout import KNOWN_STATUSES, REVERSED_TRANSACTION_STATUSES, checkout_from_dict
from tests.factories import CHECKOUT_ID, MERCHANT, NOW, NUMBER, make_order, transaction

POLICY = Policy()
KNOWN_ORDER_STATUSES = ["pending", "pending_verification", "failed", "expired", "completed", "cancelled",
                        "requires_manual_review", "refunded"]
CHANGEABLE = {"pending", "pending_verification", "failed", "expired"}

amounts = st.decimals(min_value=Decimal("-100"), max_value=Decimal("1000"), places=2, allow_nan=False,
                      allow_infinity=False)
odd_text = st.text(min_size=1, max_size=12)


# Each random case is a matching (order, answer) pair with a few fields replaced by random values.
ORDER_FIELDS = {
    "status": st.one_of(st.sampled_from(KNOWN_ORDER_STATUSES), odd_text),
    "total": amounts.filter(lambda a: a >= 0),
    "currency": st.sampled_from(["EUR", "gbp", "GBP"]),
    "sumup_checkout_id": st.sampled_from([None, "other-checkout"]),
    "created_at": st.floats(min_value=0, max_value=48 * 60, allow_nan=False).map(
        lambda m: NOW - timedelta(minutes=m)),
    "event_starts_at": st.floats(min_value=-72, max_value=72, allow_nan=False).map(
        lambda h: NOW + timedelta(hours=h)),
    "event_ends_at": st.one_of(st.none(), st.floats(min_value=-72, max_value=72, allow_nan=False).map(
        lambda h: NOW + timedelta(hours=h))),
    "artist_merchant_code": st.sampled_from([None, "MOTHER001"]),
}
TRANSACTION = st.fixed_dictionaries({
    "id": odd_text, "transaction_code": odd_text,
    "status": st.one_of(st.sampled_from(["SUCCESSFUL", "FAILED", "PENDING", "REFUNDED", "CHARGE_BACK",
                                         "CHARGEBACK"]), odd_text),
    "amount": st.one_of(amounts, st.none(), st.just(Decimal("25.00"))),
    "currency": st.sampled_from(["GBP", "EUR", "gbp", None]),
    "merchant_code": st.sampled_from([MERCHANT, "MOTHER001", None])})
BODY_FIELDS = {
    "id": st.sampled_from(["other-checkout", None]),
    "checkout_reference": st.sampled_from(["JE-OTHER", None, NUMBER.lower()]),
    "amount": st.one_of(amounts, st.none(), st.sampled_from([Decimal("25.001"), Decimal("25.0"), Decimal("25")])),
    "currency": st.sampled_from(["EUR", "USD", None, "gbp"]),
    "merchant_code": st.sampled_from(["MOTHER001", None]),
    "status": st.one_of(st.sampled_from(["PAID", "PENDING", "FAILED", "EXPIRED"]), odd_text),
    "transactions": st.lists(TRANSACTION, max_size=3),
    "extra_transaction": TRANSACTION,
}


@st.composite
def cases(draw):
    changed_order = draw(st.lists(st.sampled_from(sorted(ORDER_FIELDS)), max_size=2, unique=True))
    order = make_order(**{name: draw(ORDER_FIELDS[name]) for name in changed_order})
    kind = draw(st.sampled_from(["unknown", "not_found", "checkout", "checkout", "checkout", "checkout"]))
    if kind == "unknown":
        return order, Answer.unknown("SumUp unavailable: timed out", error_kind="timeout",
                                      transport_failure=draw(st.booleans()))
    if kind == "not_found":
        return order, Answer(kind=AnswerKind.NOT_FOUND, http_status=404, reason="404")
    body = {"id": CHECKOUT_ID, "checkout_reference": NUMBER, "amount": Decimal("25.00"), "currency": "GBP",
            "merchant_code": MERCHANT, "status": "PAID", "transactions": [transaction(Decimal("25.00"))]}
    for name in draw(st.lists(st.sampled_from(sorted(BODY_FIELDS)), max_size=2, unique=True)):
        value = draw(BODY_FIELDS[name])
        if name == "extra_transaction":
            body["transactions"] = body["transactions"] + [value]
        else:
            body[name] = value
    return order, Answer(kind=AnswerKind.CHECKOUT, http_status=200, checkout=checkout_from_dict(body))


def should_complete(order: Order, answer: Answer) -> bool:
    """The oracle: every condition of DESIGN.md for a completion, written independently."""
    if answer.kind is not AnswerKind.CHECKOUT or not order.sumup_checkout_id:
        return False
    c = answer.checkout
    age = NOW - order.created_at
    eligible = order.status in ("pending", "pending_verification") or (
        order.status in ("failed", "expired") and age <= timedelta(hours=POLICY.rescue_hours))
    good_txn = any(t.status == "SUCCESSFUL" and t.amount is not None and t.amount == order.total
                   and t.currency == order.currency.upper() and t.merchant_code in (None, order.artist_merchant_code)
                   for t in c.transactions)
    complete_txns = all(t.amount is not None and t.currency is not None
                        for t in c.transactions if t.status == "SUCCESSFUL")
    return (eligible and c.status == "PAID" and c.id == order.sumup_checkout_id
            and c.checkout_reference == order.order_number and c.amount is not None and c.amount == order.total
            and c.currency == order.currency.upper() and order.artist_merchant_code is not None
            and c.merchant_code == order.artist_merchant_code and good_txn and complete_txns
            and not any(t.status in REVERSED_TRANSACTION_STATUSES for t in c.transactions)
            and order.event_end >= NOW)


@hsettings(max_examples=200, deadline=None)
@given(cases())
def test_decision_properties(case):
    """Completion exactly when everything matches; unknown answers and final statuses never change;
    expired only on SumUp's EXPIRED/PENDING; failed only on FAILED after the grace period."""
    order, answer = case
    result = decide(order, answer, NOW, POLICY)
    event(result.outcome)
    assert result.new_status in (None, models.COMPLETED, models.FAILED, models.EXPIRED,
                                 models.REQUIRES_MANUAL_REVIEW)
    assert (result.new_status == models.COMPLETED) == should_complete(order, answer), result.reason
    assert result.issue_tickets == (result.new_status == models.COMPLETED)
    if answer.kind is AnswerKind.UNKNOWN:
        assert result.new_status is None and not result.notify and not result.issue_tickets
    if order.status not in CHANGEABLE:
        assert result.new_status is None and not result.notify
    if result.new_status == models.EXPIRED:
        assert answer.kind is AnswerKind.CHECKOUT and answer.checkout.status in ("EXPIRED", "PENDING")
        assert order.status in models.AWAITING_PAYMENT
    if result.new_status == models.FAILED:
        assert answer.kind is AnswerKind.CHECKOUT and answer.checkout.status == "FAILED"
        assert NOW - order.created_at >= timedelta(minutes=POLICY.failed_grace_minutes)
        assert order.status in models.AWAITING_PAYMENT
    if answer.kind is AnswerKind.CHECKOUT and answer.checkout.status not in KNOWN_STATUSES:
        assert result.new_status is None


# The decision's inputs in a stream of its own (more examples, cheap): statuses alone.
@hsettings(max_examples=50, deadline=None)
@given(st.sampled_from(sorted(CHANGEABLE)), st.sampled_from(["PENDING", "FAILED", "EXPIRED"]),
       st.floats(min_value=0, max_value=48 * 60, allow_nan=False))
def test_not_paid_answers_never_complete_and_respect_the_clock(status, sumup_status, age_minutes):
    """A not-paid answer never completes; PENDING expires only after max age; rescue orders never move."""
    order = make_order(status=status, created_at=NOW - timedelta(minutes=age_minutes), event_ends_at=None)
    answer = Answer(kind=AnswerKind.CHECKOUT, http_status=200, checkout=checkout_from_dict(
        {"id": CHECKOUT_ID, "checkout_reference": NUMBER, "amount": Decimal("25.00"), "currency": "GBP",
         "merchant_code": MERCHANT, "status": sumup_status}))
    result = decide(order, answer, NOW, POLICY)
    assert result.new_status != models.COMPLETED and not result.issue_tickets
    if status in models.RESCUABLE:
        assert result.new_status is None
    elif sumup_status == "PENDING":
        expected = models.EXPIRED if age_minutes >= POLICY.max_age_hours * 60 else None
        assert result.new_status == expected
    elif sumup_status == "FAILED":
        expected = models.FAILED if age_minutes >= POLICY.failed_grace_minutes else None
        assert result.new_status == expected
    else:
        assert result.new_status == models.EXPIRED


# ---- concurrent settles -------------------------------------------------------------------------


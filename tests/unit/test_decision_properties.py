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
from payverify.models import Order, OrderItem
from payverify.orders.decision import decide
from payverify.sumup.answer import Answer, AnswerKind
from payverify.sumup.checkout import KNOWN_STATUSES, REVERSED_TRANSACTION_STATUSES, checkout_from_dict
from tests.factories import CHECKOUT_ID, MERCHANT, NOW, NUMBER, make_item, make_order, transaction

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


random_items = st.lists(st.builds(make_item, id=st.integers(1, 9), quantity=st.integers(min_value=-2, max_value=120),
                                  unit_price=amounts), max_size=4)


@st.composite
def items_for(draw, total: Decimal) -> list[OrderItem]:
    """The order's items: often one that adds up to its total; else more of it, a cent off, split in
    two (the rest may be negative, zero or a fraction), random, or free admissions around the bounds."""
    shape = draw(st.sampled_from(["one"] * 4 + ["more", "cent", "split", "random", "quantity", "admissions"]))
    paid = make_item(unit_price=total)
    if shape == "one":
        return [paid]
    if shape == "more":  # the total is one admission's price, the item is several (issue 23's 5 x 10.00)
        return [make_item(quantity=draw(st.integers(min_value=2, max_value=5)), unit_price=total)]
    if shape == "cent":  # a price edited by a cent, or a fraction of one
        return [make_item(unit_price=total + draw(st.sampled_from([Decimal("-0.01"), Decimal("0.001"),
                                                                    Decimal("0.01")])))]
    if shape == "split":
        first = make_item(quantity=draw(st.integers(min_value=-1, max_value=101)), unit_price=draw(amounts))
        return [first, make_item(id=2, quantity=1, unit_price=total - first.quantity * first.unit_price)]
    if shape == "random":
        return draw(random_items)
    if shape == "quantity":
        return [paid, make_item(id=2, quantity=draw(st.sampled_from([-1, 0, 1, 99, 100, 101])),
                                unit_price=Decimal("0.00"))]
    free = draw(st.sampled_from([398, 498, 499, 500]))  # admissions beside the paid one, in items of 100
    return [paid, *(make_item(id=n + 2, quantity=min(100, free - 100 * n), unit_price=Decimal("0.00"))
                    for n in range(-(-free // 100)))]


@st.composite
def cases(draw):
    changed_order = draw(st.lists(st.sampled_from(sorted(ORDER_FIELDS)), max_size=2, unique=True))
    order = make_order(**{name: draw(ORDER_FIELDS[name]) for name in changed_order})
    items = draw(items_for(order.total))
    kind = draw(st.sampled_from(["unknown", "not_found", "checkout", "checkout", "checkout", "checkout"]))
    if kind == "unknown":
        return order, items, Answer.unknown("SumUp unavailable: timed out", failure="timeout",
                                             transport_failure=draw(st.booleans()))
    if kind == "not_found":
        return order, items, Answer(kind=AnswerKind.NOT_FOUND, http_status=404, reason="404")
    body = {"id": CHECKOUT_ID, "checkout_reference": NUMBER, "amount": Decimal("25.00"), "currency": "GBP",
            "merchant_code": MERCHANT, "status": "PAID", "transactions": [transaction(Decimal("25.00"))]}
    for name in draw(st.lists(st.sampled_from(sorted(BODY_FIELDS)), max_size=2, unique=True)):
        value = draw(BODY_FIELDS[name])
        if name == "extra_transaction":
            body["transactions"] = body["transactions"] + [value]
        else:
            body[name] = value
    return order, items, Answer(kind=AnswerKind.CHECKOUT, http_status=200, checkout=checkout_from_dict(body))


def items_issuable(order: Order, items: list[OrderItem]) -> bool:
    """The README's bounds, written out: at least one item, each of 1..100 at a price of 0 or more,
    at most 500 admissions, adding up exactly to the order's total."""
    return (len(items) > 0 and all(1 <= i.quantity <= 100 and i.unit_price >= 0 for i in items)
            and sum(i.quantity for i in items) <= 500
            and sum(i.quantity * i.unit_price for i in items) == order.total)


def should_complete(order: Order, items: list[OrderItem], answer: Answer) -> bool:
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
            and order.event_end >= NOW and items_issuable(order, items))


@hsettings(max_examples=200, deadline=None)
@given(cases())
def test_decision_properties(case):
    """Completion exactly when everything matches; unknown answers and final statuses never change;
    expired only on SumUp's EXPIRED/PENDING; failed only on FAILED after the grace period."""
    order, items, answer = case
    result = decide(order, items, answer, NOW, POLICY)
    event(result.outcome)
    assert result.new_status in (None, models.COMPLETED, models.FAILED, models.EXPIRED,
                                 models.REQUIRES_MANUAL_REVIEW)
    assert (result.new_status == models.COMPLETED) == should_complete(order, items, answer), result.reason
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


# The items in a stream of their own: everything else matches, so the items alone decide.
@hsettings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(CHANGEABLE)), st.sampled_from([Decimal("25.00"), Decimal("10.00"), Decimal("0.00")])
       .flatmap(lambda total: st.tuples(st.just(total), items_for(total))))
def test_items_alone_decide_the_tickets(status, case):
    """A PAID answer matching the order in every field: completed with tickets exactly when the items
    are issuable (at least one, each 1..100 at a price of 0 or more, at most 500 admissions, adding up
    to the total); otherwise review with its alert, and never a ticket."""
    total, items = case
    order = make_order(status=status, total=total, created_at=NOW - timedelta(hours=1))
    amount = {"amount": total, "transactions": [transaction(total)]}
    answer = Answer(kind=AnswerKind.CHECKOUT, http_status=200, checkout=checkout_from_dict(
        {"id": CHECKOUT_ID, "checkout_reference": NUMBER, "currency": "GBP", "merchant_code": MERCHANT,
         "status": "PAID", **amount}))
    result = decide(order, items, answer, NOW, POLICY)
    event(result.outcome)
    if items_issuable(order, items):
        assert result.new_status == models.COMPLETED and result.issue_tickets, result.reason
    else:
        assert result.new_status == models.REQUIRES_MANUAL_REVIEW and not result.issue_tickets
        assert result.notify == ("admin_alert_amount_mismatch",)


# The decision's inputs in a stream of its own (more examples, cheap): statuses alone.
@hsettings(max_examples=50, deadline=None)
@given(st.sampled_from(sorted(CHANGEABLE)), st.sampled_from(["PENDING", "FAILED", "EXPIRED"]),
       st.floats(min_value=0, max_value=48 * 60, allow_nan=False), random_items)
def test_not_paid_answers_never_complete_and_respect_the_clock(status, sumup_status, age_minutes, items):
    """A not-paid answer never completes; PENDING expires only after max age; rescue orders never move;
    the items (which only decide whether tickets may be issued) change none of it."""
    order = make_order(status=status, created_at=NOW - timedelta(minutes=age_minutes), event_ends_at=None)
    answer = Answer(kind=AnswerKind.CHECKOUT, http_status=200, checkout=checkout_from_dict(
        {"id": CHECKOUT_ID, "checkout_reference": NUMBER, "amount": Decimal("25.00"), "currency": "GBP",
         "merchant_code": MERCHANT, "status": sumup_status}))
    result = decide(order, items, answer, NOW, POLICY)
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


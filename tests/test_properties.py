"""Property-based tests (hypothesis): the decision over random orders and answers, and the settle
step under random interleavings of concurrent verifies of one paid order."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import HealthCheck, event, given, settings as hsettings, strategies as st

from payverify import models
from payverify.config import Policy
from payverify.db import Database
from payverify.orders.decision import decide
from payverify.models import Order
from payverify.secret import Secret
from payverify.orders.settle import Attempt
from payverify.sumup.answer import Answer, AnswerKind
from payverify.sumup.checkout import KNOWN_STATUSES, REVERSED_TRANSACTION_STATUSES, checkout_from_dict
from payverify.sumup.client import SumUpClient
from payverify.orders.verify import Verifier
from tests.helpers import scalar

NOW = datetime(2026, 11, 26, 20, 0, tzinfo=timezone.utc)
POLICY = Policy()
CHECKOUT_ID = "4e425463-3e1b-431d-83fa-1e51c2925e99"
MERCHANT = "MH4H92C7"
NUMBER = "JE-7F3K2Q"
KNOWN_ORDER_STATUSES = ["pending", "pending_verification", "failed", "expired", "completed", "cancelled",
                        "requires_manual_review", "refunded"]
CHANGEABLE = {"pending", "pending_verification", "failed", "expired"}

amounts = st.decimals(min_value=Decimal("-100"), max_value=Decimal("1000"), places=2, allow_nan=False,
                      allow_infinity=False)
odd_text = st.text(min_size=1, max_size=12)


def good_order(**overrides) -> Order:
    values = dict(id=7, order_number=NUMBER, status="pending_verification", email="fan@example.com",
                  first_name="Alex", last_name="Morgan", total=Decimal("25.00"), currency="GBP",
                  sumup_checkout_id=CHECKOUT_ID, created_at=NOW - timedelta(minutes=10), event_id=3,
                  event_title="Harbour Lights", event_venue="Fort Regent", event_starts_at=NOW + timedelta(days=3),
                  event_ends_at=NOW + timedelta(days=3, hours=3), artist_id=1, artist_name="Lua Verde",
                  artist_merchant_code=MERCHANT, artist_uses_oauth=False)
    values.update(overrides)
    return Order(**values)


def good_transaction(total: Decimal) -> dict:
    return {"id": "t1", "transaction_code": "TEENSK4W2K", "status": "SUCCESSFUL", "amount": total,
            "currency": "GBP", "merchant_code": MERCHANT}


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
    order = good_order(**{name: draw(ORDER_FIELDS[name]) for name in changed_order})
    kind = draw(st.sampled_from(["unknown", "not_found", "checkout", "checkout", "checkout", "checkout"]))
    if kind == "unknown":
        return order, Answer.unknown("SumUp unavailable: timed out", error_kind="timeout",
                                      transport_failure=draw(st.booleans()))
    if kind == "not_found":
        return order, Answer(kind=AnswerKind.NOT_FOUND, http_status=404, reason="404")
    body = {"id": CHECKOUT_ID, "checkout_reference": NUMBER, "amount": Decimal("25.00"), "currency": "GBP",
            "merchant_code": MERCHANT, "status": "PAID", "transactions": [good_transaction(Decimal("25.00"))]}
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
    order = Order(id=7, order_number=NUMBER, status=status, email="f@example.com", first_name="A", last_name="B",
                  total=Decimal("25.00"), currency="GBP", sumup_checkout_id=CHECKOUT_ID,
                  created_at=NOW - timedelta(minutes=age_minutes), event_id=3, event_title="T", event_venue="V",
                  event_starts_at=NOW + timedelta(days=3), event_ends_at=None, artist_id=1, artist_name="L",
                  artist_merchant_code=MERCHANT, artist_uses_oauth=False)
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

@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sleeps=st.lists(st.tuples(st.floats(min_value=0, max_value=0.01), st.floats(min_value=0, max_value=0.03)),
                       min_size=2, max_size=5),
       quantity=st.integers(min_value=1, max_value=4))
def test_concurrent_verifies_settle_once(sleeps, quantity, settings, seed, db, sumup, database_url):
    """N verifies of one paid order at once, with random delays before asking and after SumUp answered:
    exactly one completion, tickets == admissions, one fulfilment row, one confirmation in the outbox."""
    artist = seed.artist()
    event = seed.event(artist)
    order = seed.order([(seed.ticket_type(event), quantity)], event_id=event)
    start = threading.Barrier(len(sleeps))
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def run(index: int, before: float, after: float) -> None:
        worker_db = Database.connect(Secret(database_url))
        client = SumUpClient(sumup.url)
        try:
            verifier = Verifier(settings, worker_db, client,
                                Attempt(run_id=f"prop{index}", host="h", command="sweep", lease_owner=f"h:{index}"))
            original_ask = verifier.ask

            def ask_then_sleep(o):
                answer = original_ask(o)
                time.sleep(after)
                return answer

            verifier.ask = ask_then_sleep
            start.wait(timeout=10)
            time.sleep(before)
            outcomes.append(verifier.verify(order.id).outcome)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            client.close()
            worker_db.close()

    threads = [threading.Thread(target=run, args=(i, b, a)) for i, (b, a) in enumerate(sleeps)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert len(outcomes) == len(sleeps)
    # The others either lost the guarded UPDATE (superseded) or loaded the order already completed.
    assert outcomes.count("completed") == 1, outcomes
    assert set(outcomes) <= {"completed", "superseded", "unchanged"}, outcomes
    assert scalar(db, f"SELECT status FROM orders_order WHERE id = {order.id}") == "completed"
    assert scalar(db, f"SELECT count(*) FROM tickets_ticket WHERE order_id = {order.id}") == order.admissions
    assert scalar(db, f"SELECT count(*) FROM payverify_fulfilment WHERE order_id = {order.id}") == 1
    assert scalar(db, f"SELECT count(*) FROM payverify_outbox WHERE order_id = {order.id} "
                      "AND kind = 'order_confirmation'") == 1

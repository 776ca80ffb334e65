"""The decision table of DESIGN.md as one pure function: no I/O, no clock of its own.

Every path (sweep, check, replay) calls `decide`. It returns what to do; settle.py does it. The
order's items are an input: the tickets are made from them, so a PAID order completes only when they
add up to what was paid.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from payverify import models
from payverify.config import Policy
from payverify.mail.kinds import ALERT_LATE_PAYMENT, ALERT_REVIEW, CONFIRMATION, PAYMENT_FAILED
from payverify.money import format_amount, format_exact, same_amount
from payverify.orders.tickets import item_problems, items_total
from payverify.sumup.answer import Answer, AnswerKind
from payverify.sumup.checkout import EXPIRED, FAILED, PAID, PENDING, Checkout, plausible_checkout_id


@dataclass(frozen=True, kw_only=True)
class Decision:
    new_status: str | None  # None: leave the order as it is
    reason: str  # one sentence a person can read
    notify: tuple[str, ...] = ()
    issue_tickets: bool = False

    @property
    def changes_order(self) -> bool:
        return self.new_status is not None

    @property
    def outcome(self) -> str:
        return self.new_status or "unchanged"


def _keep(reason: str) -> Decision:
    return Decision(new_status=None, reason=reason)


def _review(reason: str) -> Decision:
    return Decision(new_status=models.REQUIRES_MANUAL_REVIEW, reason=reason, notify=(ALERT_REVIEW,))


def decide(order: models.Order, items: list[models.OrderItem], answer: Answer, now: datetime,
           policy: Policy) -> Decision:
    """What to do with `order` and its `items` given SumUp's `answer` at time `now` (timezone-aware)."""
    age = now - order.created_at
    if order.status in models.RESCUABLE:
        if age > timedelta(hours=policy.rescue_hours):
            return _keep(f"order is {order.status} and older than the {policy.rescue_hours:g} h rescue window")
    elif order.status not in models.AWAITING_PAYMENT:
        return _keep(f"order is {order.status}: payverify never changes it")
    if not order.sumup_checkout_id:
        return _keep("order has no SumUp checkout yet")
    if not plausible_checkout_id(order.sumup_checkout_id):  # never asked: no answer will ever come
        if order.status in models.RESCUABLE:
            return _keep(f"checkout id {order.sumup_checkout_id!r} is not a SumUp id; order stays {order.status}")
        return _review(f"checkout id {order.sumup_checkout_id!r} is not a plausible SumUp checkout id; "
                       f"SumUp was not asked")
    if answer.kind is AnswerKind.UNKNOWN:
        return _keep(f"no definitive answer from SumUp ({answer.reason}); retried next run")
    if answer.kind is AnswerKind.NOT_FOUND:
        if order.status in models.RESCUABLE:
            return _keep(f"SumUp does not know checkout {order.sumup_checkout_id}; order stays {order.status}")
        return _review(f"SumUp does not know checkout {order.sumup_checkout_id} (HTTP 404)")
    checkout = answer.checkout
    assert checkout is not None
    if checkout.status == PAID:
        return _decide_paid(order, items, checkout, now)
    if checkout.id is not None and checkout.id != order.sumup_checkout_id:
        return _keep(f"SumUp answered about checkout {checkout.id}, not {order.sumup_checkout_id}")
    if order.status in models.RESCUABLE:
        return _keep(f"SumUp says {checkout.status}; a {order.status} order changes only when paid")
    return _decide_not_paid(order, checkout.status, age, policy)


def _decide_not_paid(order: models.Order, status: str, age: timedelta, policy: Policy) -> Decision:
    minutes = age.total_seconds() / 60
    if status == FAILED:
        if age < timedelta(minutes=policy.failed_grace_minutes):
            return _keep(f"SumUp says FAILED but the order is {minutes:.0f} min old; "
                         f"the customer may still retry (grace {policy.failed_grace_minutes:g} min)")
        return Decision(new_status=models.FAILED, notify=(PAYMENT_FAILED,),
                        reason=f"SumUp says FAILED and the {policy.failed_grace_minutes:g} min grace has passed")
    if status == EXPIRED:
        return Decision(new_status=models.EXPIRED, reason="SumUp says the checkout EXPIRED")
    if status == PENDING:
        if age < timedelta(hours=policy.max_age_hours):
            return _keep(f"SumUp says PENDING; the order is {minutes:.0f} min old "
                         f"(expires unpaid after {policy.max_age_hours:g} h)")
        return Decision(new_status=models.EXPIRED,
                        reason=f"SumUp says PENDING and the order is older than {policy.max_age_hours:g} h")
    return _keep(f"SumUp status {status!r} is not one payverify knows; retried next run")


def _decide_paid(order: models.Order, items: list[models.OrderItem], checkout: Checkout,
                 now: datetime) -> Decision:
    missing = missing_paid_fields(checkout)
    if missing:
        return _keep(f"SumUp says PAID but the reply lacks {', '.join(missing)}; retried next run")
    mismatches = paid_mismatches(order, checkout) + item_mismatches(order, items, checkout)
    if mismatches:
        return _review("SumUp says PAID but " + "; ".join(mismatches))
    if order.event_end < now:
        return _review(f"SumUp says PAID but the event was over at {order.event_end:%Y-%m-%d %H:%M %Z}")
    if order.status in models.RESCUABLE:
        return Decision(new_status=models.COMPLETED, issue_tickets=True,
                        notify=(CONFIRMATION, ALERT_LATE_PAYMENT),
                        reason=f"SumUp says PAID after the order was marked {order.status}: late payment")
    return Decision(new_status=models.COMPLETED, issue_tickets=True, notify=(CONFIRMATION,),
                    reason="SumUp says PAID; amount, currency, merchant and reference match, "
                           "and the items add up to the total")


def missing_paid_fields(checkout: Checkout) -> list[str]:
    """Fields a PAID answer must carry to be checked; absent ones make the answer not understood."""
    names = ("id", "checkout_reference", "amount", "currency", "merchant_code")
    missing = [name for name in names if getattr(checkout, name) is None]
    for t in checkout.successful_transactions:
        if t.amount is None or t.currency is None:
            missing.append("the successful transaction's amount or currency")
            break
    return missing


def paid_mismatches(order: models.Order, checkout: Checkout) -> list[str]:
    """Every way a PAID checkout differs from the order (empty: it matches)."""
    problems = []
    if checkout.id != order.sumup_checkout_id:
        problems.append(f"checkout id is {checkout.id}, expected {order.sumup_checkout_id}")
    if checkout.checkout_reference != order.order_number:
        problems.append(f"reference is {checkout.checkout_reference!r}, expected {order.order_number!r}")
    currency_ok = (checkout.currency or "") == order.currency.upper()
    if not currency_ok:
        problems.append(f"currency is {checkout.currency}, expected {order.currency.upper()}")
    elif checkout.amount is None:  # not reached from decide(): missing_paid_fields comes first
        problems.append("amount is missing")
    elif not same_amount(checkout.amount, order.total):
        problems.append(f"amount is {format_amount(checkout.amount, order.currency)}, "
                        f"expected {format_amount(order.total, order.currency)}")
    if order.artist_merchant_code is None:
        problems.append("the artist has no SumUp merchant code to compare with")
    elif checkout.merchant_code != order.artist_merchant_code:
        problems.append(f"merchant is {checkout.merchant_code}, expected {order.artist_merchant_code}")
    good = [t for t in checkout.successful_transactions
            if t.currency == order.currency.upper() and t.amount is not None and same_amount(t.amount, order.total)
            and t.merchant_code in (None, order.artist_merchant_code)]
    if not good:
        problems.append("no SUCCESSFUL transaction for the order's amount")
    reversed_ = checkout.reversed_transactions
    if reversed_:
        problems.append("a transaction was " + ", ".join(sorted({t.status or "" for t in reversed_})))
    return problems


def item_mismatches(order: models.Order, items: list[models.OrderItem], checkout: Checkout) -> list[str]:
    """Every way the items, which the tickets are made from, fail what was paid (empty: none).
    Exact (Decimal): items of 5 x 10.00 are not an order of 10.00, whatever SumUp says of the total."""
    problems = item_problems(items)
    added = items_total(items)
    if items and not same_amount(added, order.total):
        paid = ("no amount" if checkout.amount is None
                else format_exact(checkout.amount, checkout.currency or order.currency))
        problems.append(f"the items add up to {format_exact(added, order.currency)}, not the order's total of "
                        f"{format_exact(order.total, order.currency)} (SumUp was paid {paid})")
    return problems


def widen_rescue(policy: Policy, since: datetime | None, now: datetime) -> Policy:
    """`sweep --since T`: failed/expired orders created since T are in the rescue window too."""
    if since is None:
        return policy
    hours = (now - since).total_seconds() / 3600
    return replace(policy, rescue_hours=max(policy.rescue_hours, hours))

"""Reconciliation's judgement (pure): SumUp's transaction history against the completed orders.

`payverify reconcile` (modes/reconcile_account.py) reads the history page by page and the orders
it needs; this module says, for one payment and the completed order that names it (if any), what is
wrong, keeps the day's totals on both sides, and gives each discrepancy a key that stays the same
across runs, so staff are told about each once. Only ECOM payments can be ticket orders: card-reader and
cash sales on the same merchant account are counted apart and never judged.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from payverify.money import format_amount, quantize
from payverify.sumup.history import HistoryItem

REFUNDED = "refunded_after_completion"
CHARGEBACK = "chargeback_after_completion"
PAID_WITHOUT_ORDER = "paid_without_completed_order"
COMPLETED_WITHOUT_PAYMENT = "completed_without_payment"
AMOUNT_DIFFERS = "amount_differs"

ONLINE = "ECOM"
PAYMENT_TYPES = (None, "PAYMENT")  # a history item of type REFUND or CHARGE_BACK is the other side of one
NOT_PAID = ("FAILED", "CANCELLED", "PENDING")  # a completed order's transaction in one of these took no money
UNPAID = ("pending", "pending_verification", "failed", "expired", "requires_manual_review")  # no tickets issued
AWAITING = ("pending", "pending_verification")  # a sweep looks at these whatever their age
RESCUED = ("failed", "expired")  # and at these while they are younger than the rescue window


@dataclass(frozen=True)
class ReconciledOrder:
    """An order as reconciliation knows it: one a payment's transaction code names, or one whose
    checkout lists the payment."""

    id: int
    order_number: str
    status: str
    total: Decimal
    currency: str
    merchant_code: str
    transaction_code: str | None = None
    paid_at: datetime | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class Discrepancy:
    key: str  # the same on every run for the same fact: what de-duplicates the alert
    finding: str  # what is wrong, one of the five above: `kind` in the JSON, the alert and the table
    merchant_code: str
    transaction_code: str | None
    amount: Decimal | None
    currency: str | None
    sumup_status: str | None
    detail: str  # one sentence
    order_number: str | None = None
    order_status: str | None = None


def is_payment(item: HistoryItem) -> bool:
    return item.type in PAYMENT_TYPES


def is_ticket_payment(item: HistoryItem) -> bool:
    """An online payment: the only kind a ticket order can be."""
    return item.payment_type == ONLINE and is_payment(item)


def _money(amount: Decimal | None, currency: str | None) -> str:
    if amount is None:
        return "no amount"
    return format_amount(amount, currency) if currency else f"{amount} (no currency)"


def _same_money(item: HistoryItem, order: ReconciledOrder) -> bool:
    if item.amount is None or item.currency is None or item.currency.upper() != order.currency.upper():
        return False
    return quantize(item.amount, order.currency) == quantize(order.total, order.currency)


def judge_completed(item: HistoryItem, order: ReconciledOrder, merchant_code: str) -> list[Discrepancy]:
    """A payment named by a completed order: refunded, charged back or a different amount, or fine ([])."""
    code = item.transaction_code
    found: list[Discrepancy] = []

    def report(finding: str, key_tail: str, detail: str) -> None:
        found.append(Discrepancy(key=f"{finding}:{merchant_code}:{code}{key_tail}", finding=finding,
                                 merchant_code=merchant_code, transaction_code=code, amount=item.amount,
                                 currency=item.currency, sumup_status=item.status, detail=detail,
                                 order_number=order.order_number, order_status=order.status))

    if item.status in NOT_PAID:
        return [Discrepancy(key=f"{COMPLETED_WITHOUT_PAYMENT}:order:{order.id}", finding=COMPLETED_WITHOUT_PAYMENT,
                            merchant_code=merchant_code, transaction_code=code, amount=item.amount,
                            currency=item.currency, sumup_status=item.status, order_number=order.order_number,
                            order_status=order.status,
                            detail=f"Order {order.order_number} is completed, but SumUp's transaction {code} "
                                   f"for it is {item.status}: no money was taken.")]
    if item.status == "CHARGE_BACK":
        report(CHARGEBACK, "", f"Order {order.order_number} is completed with its tickets valid, but the card "
                               f"holder's bank charged the payment of {_money(item.amount, item.currency)} back.")
    elif item.status == "REFUNDED" or (item.refunded_amount or 0) > 0:
        refunded = item.refunded_amount if item.refunded_amount is not None else item.amount
        # The refunded amount is part of the key (a partial refund that later becomes a full one is news),
        # written the same way however SumUp wrote the number (12.5, 12.50).
        tail = f":{quantize(refunded, order.currency)}" if refunded is not None else ""
        how = (f"{_money(refunded, item.currency)} of {_money(item.amount, item.currency)} was refunded"
               if refunded is not None and item.amount is not None and refunded < item.amount
               else f"the payment of {_money(item.amount, item.currency)} was refunded")
        report(REFUNDED, tail, f"Order {order.order_number} is completed with its tickets valid, but {how} at SumUp.")
    if not _same_money(item, order):
        report(AMOUNT_DIFFERS, "", f"Order {order.order_number} is for {format_amount(order.total, order.currency)}, "
                                   f"SumUp's payment is {_money(item.amount, item.currency)}.")
    return found


def sweep_may_settle(order: ReconciledOrder, rescue_since: datetime) -> bool:
    """Whether a sweep still looks at this order (DESIGN.md, "Which orders a sweep looks at"): awaiting
    payment, or failed/expired and created within the rescue window. Never a cancelled, refunded,
    completed or requires_manual_review one."""
    if order.status in AWAITING:
        return True
    return order.status in RESCUED and order.created_at is not None and order.created_at >= rescue_since


def waits_for_a_sweep(paid_at: datetime, owner: ReconciledOrder | None, rescue_since: datetime, *,
                      owner_unsure: bool) -> bool:
    """Whether a SUCCESSFUL payment no completed order names is left to a later run rather than reported
    now: only while it is younger than the rescue window and its owner is an order a sweep may still
    settle (or, no owner found, when that "none" is unsure). A payment whose owner no sweep will
    settle, or that has none, is reported by the run that first sees it."""
    if paid_at < rescue_since:
        return False
    return sweep_may_settle(owner, rescue_since) if owner is not None else owner_unsure


def paid_without_order(item: HistoryItem, merchant_code: str, owner: ReconciledOrder | None) -> Discrepancy:
    """A SUCCESSFUL online payment no completed order names; `owner`: the order whose checkout lists it."""
    money = _money(item.amount, item.currency)
    if owner is not None:
        detail = (f"SumUp took {money}, the payment of order {owner.order_number}'s checkout, but that order "
                  f"is {owner.status}" + (": no tickets were issued for it." if owner.status in UNPAID else "."))
    else:
        detail = f"SumUp took {money} online and no order was found for it: no tickets were issued for it."
    return Discrepancy(key=f"{PAID_WITHOUT_ORDER}:{merchant_code}:{item.transaction_code}", finding=PAID_WITHOUT_ORDER,
                       merchant_code=merchant_code, transaction_code=item.transaction_code, amount=item.amount,
                       currency=item.currency, sumup_status=item.status, detail=detail,
                       order_number=owner.order_number if owner else None, order_status=owner.status if owner else None)


def completed_without_payment(order: ReconciledOrder) -> Discrepancy:
    """A completed order whose transaction code SumUp's history for its merchant does not have."""
    if order.transaction_code:
        detail = (f"Order {order.order_number} is completed ({format_amount(order.total, order.currency)}) but "
                  f"SumUp's history for merchant {order.merchant_code} has no transaction {order.transaction_code}.")
    else:
        detail = (f"Order {order.order_number} is completed ({format_amount(order.total, order.currency)}) "
                  f"with no SumUp transaction code: no payment is recorded for it.")
    return Discrepancy(key=f"{COMPLETED_WITHOUT_PAYMENT}:order:{order.id}", finding=COMPLETED_WITHOUT_PAYMENT,
                       merchant_code=order.merchant_code, transaction_code=order.transaction_code,
                       amount=order.total, currency=order.currency, sumup_status=None, detail=detail,
                       order_number=order.order_number, order_status=order.status)


@dataclass
class Totals:
    """Per merchant, local day and currency: SumUp's successful online takings against the completed
    orders' totals. Plus what was seen but is not a ticket payment, by payment type."""

    zone: ZoneInfo
    sumup: defaultdict[tuple[str, date, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    orders: defaultdict[tuple[str, date, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    other: Counter[str] = field(default_factory=Counter)

    def payment(self, merchant_code: str, item: HistoryItem) -> None:
        if not is_ticket_payment(item):
            self.other[item.payment_type or item.type or "unknown"] += 1
        elif item.status == "SUCCESSFUL" and item.amount is not None and item.currency and item.timestamp:
            self.sumup[(merchant_code, self._day(item.timestamp), item.currency.upper())] += item.amount

    def order(self, order: ReconciledOrder, *, on: datetime | None) -> None:
        """A completed order's total, on the day of `on` (its payment's timestamp where SumUp has it)."""
        if on is not None:
            self.orders[(order.merchant_code, self._day(on), order.currency.upper())] += order.total

    def _day(self, moment: datetime) -> date:
        return moment.astimezone(self.zone).date()

    def days(self) -> list[tuple[str, date, str, Decimal, Decimal]]:
        """(merchant, day, currency, SumUp's total, the orders' total), in order."""
        keys = sorted(set(self.sumup) | set(self.orders))
        return [(m, d, c, self.sumup.get((m, d, c), Decimal(0)), self.orders.get((m, d, c), Decimal(0)))
                for m, d, c in keys]

    def by_currency(self) -> dict[str, tuple[Decimal, Decimal]]:
        """Per currency: (SumUp's total, the orders' total) over every account and day."""
        out: dict[str, tuple[Decimal, Decimal]] = {}
        for _, _, currency, sumup, orders in self.days():
            s, o = out.get(currency, (Decimal(0), Decimal(0)))
            out[currency] = (s + sumup, o + orders)
        return out

"""Apply a decision in ONE short transaction.

The guarded UPDATE (status and checkout id as we saw them) must touch exactly one row; zero rows
means someone else settled the order first, and nothing else is written. When paid, the same
transaction writes the tickets, the fulfilment row (primary key = order id: the database refuses a
second issuance even if every other guard failed), the outbox rows and the audit row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from payverify import faults
from payverify.config import Settings
from payverify.db import Tx
from payverify.errors import UniqueViolation
from payverify.mail import outbox
from payverify.mail.kinds import PAYMENT_FAILED
from payverify.models import Order, OrderItem
from payverify.orders import notices
from payverify.orders.decision import Decision
from payverify.orders.ticket_clock import clock_start
from payverify.orders.tickets import ticket_rows
from payverify.sumup.answer import Answer

SUPERSEDED = "superseded"
ERROR = "error"


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """Who made this attempt, for the audit row."""

    run_id: str
    host: str
    command: str
    lease_owner: str


@dataclass(frozen=True, kw_only=True)
class Settled:
    outcome: str  # the decision's outcome, or superseded / already_fulfilled
    applied: bool
    tickets_issued: int = 0
    queued: tuple[str, ...] = ()


def transaction_code(answer: Answer) -> str | None:
    checkout = answer.checkout
    if checkout is None:
        return None
    if checkout.transaction_code:
        return checkout.transaction_code
    codes = [t.transaction_code for t in checkout.successful_transactions if t.transaction_code]
    return codes[0] if codes else None


def settle(tx: Tx, settings: Settings, attempt: Attempt, order: Order, items: list[OrderItem],
           decision: Decision, answer: Answer, duration_ms: int, *, now: datetime) -> Settled:
    """Write the outcome (`now`: this transaction's database time, as decided on). Raises
    UniqueViolation if tickets were already issued (caller rolls back)."""
    result = Settled(outcome=decision.outcome, applied=False)
    if decision.changes_order:
        paid = decision.issue_tickets
        touched = tx.run("settle_order", order_id=order.id, new_status=decision.new_status, paid=paid,
                         transaction_code=transaction_code(answer) if paid else None,
                         seen_status=order.status, seen_checkout_id=order.sumup_checkout_id)
        if touched != 1:
            result = Settled(outcome=SUPERSEDED, applied=False)
        else:
            tickets = _issue(tx, attempt, order, items, answer) if paid else 0
            if paid:
                # A rescued order must not also get "your payment failed" if that mail is still queued.
                tx.run("cancel_pending_mail", order_id=order.id, kind=PAYMENT_FAILED)
            started = clock_start(order, answer.checkout, now) if paid else None
            messages = notices.messages_for(decision, order, items, answer.checkout, settings,
                                            ticket_clock_started_at=started)
            queued = tuple(m.kind for m in messages if outbox.queue(tx, settings, m))
            result = Settled(outcome=decision.outcome, applied=True, tickets_issued=tickets, queued=queued)
    record(tx, attempt, order, answer, result.outcome, _reason(decision, result), duration_ms)
    faults.point("before_settle_commit")
    return result


def _issue(tx: Tx, attempt: Attempt, order: Order, items: list[OrderItem], answer: Answer) -> int:
    rows = ticket_rows(order, items)
    tx.run("insert_fulfilment", order_id=order.id, checkout_id=order.sumup_checkout_id,
           transaction_code=transaction_code(answer), tickets_issued=len(rows), run_id=attempt.run_id)
    tx.run_many("insert_ticket", rows)
    return len(rows)


def _reason(decision: Decision, result: Settled) -> str:
    if result.outcome == SUPERSEDED:
        return f"order changed since it was read; left to whoever changed it (wanted: {decision.outcome})"
    return decision.reason


def record(tx: Tx, attempt: Attempt, order: Order, answer: Answer, outcome: str, reason: str,
           duration_ms: int) -> None:
    """The audit row for this attempt, and the per-order bookkeeping (releases the lease). A decision
    ends any error streak, and frees its alert's key so that a new streak alerts again."""
    tx.run("insert_audit", run_id=attempt.run_id, host=attempt.host, command=attempt.command,
           order_id=order.id, order_number=order.order_number, checkout_id=order.sumup_checkout_id,
           http_status=answer.http_status, sumup_status=answer.sumup_status, outcome=outcome,
           reason=reason, duration_ms=duration_ms)
    tx.run("record_check", order_id=order.id, checked_at=order.read_at, owner=attempt.lease_owner,
           http_status=answer.http_status, sumup_status=answer.sumup_status, outcome=outcome, reason=reason)
    # After record_check: its row lock waited for any erroring attempt, so an alert that one queued is seen.
    tx.run("rearm_alert", dedup_key=outbox.order_error_key(order.id))


@dataclass(frozen=True)
class ErrorStreak:
    order_number: str | None  # None: no such order (any more)
    runs: int  # erroring attempts in a row, this one included


def record_error(tx: Tx, settings: Settings, attempt: Attempt, order_id: int, reason: str) -> ErrorStreak:
    """An attempt that failed before reaching a decision: audited, the order goes to the back and its
    error streak grows by one for each run it errors in; at ORDER_ERROR_ALERT_RUNS in a row staff get
    one alert (until it verifies). A run's own re-asks (watch's, seconds apart, while a table is
    locked for a migration say) count once: the streak is "after a few runs", not a few seconds."""
    found = tx.one("order_number_by_id", order_id=order_id)  # the order itself may not load
    number = found["order_number"] if found else None
    # Before this attempt's audit row: the streak looks for an earlier error of the same run.
    streak = tx.require_one("record_error_check", order_id=order_id, owner=attempt.lease_owner, outcome=ERROR,
                            reason=reason, run_id=attempt.run_id)
    tx.run("insert_audit", run_id=attempt.run_id, host=attempt.host, command=attempt.command,
           order_id=order_id, order_number=number, checkout_id=None, http_status=None, sumup_status=None,
           outcome=ERROR, reason=reason, duration_ms=0)
    runs = streak["consecutive_errors"]
    if runs >= outbox.ORDER_ERROR_ALERT_RUNS:  # de-duplicated by key: one per streak
        outbox.queue(tx, settings, outbox.order_error_alert(order_id, number, reason, streak["first_error_at"],
                                                            runs, settings))
    return ErrorStreak(order_number=number, runs=runs)


__all__ = [
    "ERROR",
    "SUPERSEDED",
    "Attempt",
    "ErrorStreak",
    "Settled",
    "UniqueViolation",
    "record",
    "record_error",
    "settle",
]

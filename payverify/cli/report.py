"""What `sweep` and `check` print for a person (and as JSON)."""

from __future__ import annotations

from typing import Any

import click

from payverify.check import CheckResult
from payverify.money import format_amount
from payverify.outbox import checkout_context
from payverify.sweep import SweepReport


def print_sweep(report: SweepReport) -> None:
    mode = "dry run, nothing written" if report.dry_run else f"run {report.run_id}"
    for result in report.results:
        order = result.order
        click.echo(f"{order.order_number:<16} {order.status:<22} -> {result.outcome:<24} {result.decision.reason}")
    outcomes = ", ".join(f"{n} {name}" for name, n in sorted(report.outcomes.items())) or "nothing to do"
    click.echo(f"{report.verified} of {report.due} due orders verified ({mode}): {outcomes}")
    if report.claimed_elsewhere:
        click.echo(f"{report.claimed_elsewhere} skipped: being verified by another run")
    if report.errors:
        click.echo(f"{report.errors} failed with a database error (see the log file)")
    if report.stopped_early:
        click.echo(f"stopped early: {report.stopped_early}; the rest are verified next run")


def _answer_line(check: CheckResult) -> str:
    answer = check.answer
    checkout = answer.checkout
    if checkout is None:
        return f"SumUp:    {answer.reason}"
    amount = format_amount(checkout.amount, checkout.currency) if checkout.amount is not None and checkout.currency else "no amount"
    return (f"SumUp:    {checkout.status}, {amount}, merchant {checkout.merchant_code}, "
            f"reference {checkout.checkout_reference} (HTTP {answer.http_status})")


def print_check(check: CheckResult) -> None:
    result = check.result
    order = result.order
    click.echo(f"Order:    {order.order_number} (id {order.id}), {order.status}, "
               f"{format_amount(order.total, order.currency)}, event {order.event_title!r}")
    click.echo(f"Checkout: {order.sumup_checkout_id or '(none)'}")
    click.echo(_answer_line(check))
    for t in result.answer.checkout.transactions if result.answer.checkout else ():
        amount = format_amount(t.amount, t.currency) if t.amount is not None and t.currency else "?"
        click.echo(f"          transaction {t.transaction_code or t.id}: {t.status}, {amount}")
    click.echo(f"Decision: {result.decision.outcome}: {result.decision.reason}")
    settled = result.settled
    if settled is None:
        click.echo("Done:     nothing (dry run)")
    elif settled.applied:
        done = [f"order is now {settled.outcome}"]
        if settled.tickets_issued:
            done.append(f"{settled.tickets_issued} tickets issued")
        if settled.queued:
            done.append("queued " + ", ".join(settled.queued))
        click.echo("Done:     " + "; ".join(done))
    else:
        click.echo(f"Done:     nothing changed ({settled.outcome})")
    for row in check.outbox:
        click.echo(f"Mail:     {row['kind']}: {row['status']} (attempts {row['attempts']})")


def check_json(check: CheckResult) -> dict[str, Any]:
    result = check.result
    order = result.order
    return {
        "order": {"id": order.id, "order_number": order.order_number, "status": order.status,
                  "total": str(order.total), "currency": order.currency,
                  "checkout_id": order.sumup_checkout_id, "created_at": order.created_at.isoformat(),
                  "event": order.event_title,
                  "items": [{"ticket_type": i.ticket_type_name, "quantity": i.quantity} for i in result.items]},
        "sumup": {"kind": str(result.answer.kind), "http_status": result.answer.http_status,
                  "reason": result.answer.reason, "checkout": checkout_context(result.answer.checkout)},
        "decision": {"outcome": result.decision.outcome, "reason": result.decision.reason},
        "done": None if result.settled is None else {
            "outcome": result.settled.outcome, "applied": result.settled.applied,
            "tickets_issued": result.settled.tickets_issued, "queued": list(result.settled.queued)},
        "dry_run": result.settled is None,
        "attempts": check.audit,
        "mail": check.outbox,
    }

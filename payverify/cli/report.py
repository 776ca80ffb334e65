"""What `sweep`, `check` and `pending` print for a person (and as JSON).

Every line a person reads goes through `say`: names and SumUp's strings are shown with their control
characters escaped (payverify.printable), so none can forge a line or drive the terminal. JSON needs
nothing more: json.dumps escapes every control character (and, ensure_ascii, everything not ASCII).
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from datetime import UTC
from typing import TYPE_CHECKING, Any

import click

from payverify.modes.check import CheckResult
from payverify.modes.pending import PendingRow
from payverify.modes.sweep import FAILURES_KEPT, SweepReport
from payverify.money import format_amount
from payverify.orders.notices import checkout_context
from payverify.printable import printable

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar as ClickProgressBar  # what click.progressbar returns


def say(line: str = "") -> None:
    """One line on stdout, whatever its parts held."""
    click.echo(printable(line))


def warn(line: str) -> None:
    """One line on stderr, while the command goes on: what it is waiting for, say."""
    click.echo(printable(f"payverify: {line}"), err=True)


def print_sweep(report: SweepReport, *, per_order: bool) -> None:
    """Per-order lines (dry runs), then a summary table by outcome."""
    mode = "dry run, nothing written" if report.dry_run else f"run {report.run_id}"
    if per_order:
        for result in report.results:
            order = result.order
            say(f"{order.order_number:<16} {order.status:<22} -> {result.outcome:<24} {result.decision.reason}")
        say()
    say(f"{report.verified} of {report.due} due orders verified ({mode})")
    if report.outcomes:
        width = max(len(name) for name in report.outcomes)
        say(f"  {'outcome':<{width}}  orders")
        for name, n in sorted(report.outcomes.items(), key=lambda item: (-item[1], item[0])):
            say(f"  {name:<{width}}  {n:>6}")
    if report.claimed_elsewhere:
        say(f"{report.claimed_elsewhere} skipped: being verified by another run")
    if report.errors:
        say(f"{report.errors} could not be verified because of an error (listed on stderr; see the log file)")
    if report.stopped_early:
        say(f"stopped early: {report.stopped_early}; the rest are verified next run")


def order_error_lines(report: SweepReport, *, limit: int = FAILURES_KEPT) -> list[str]:
    """One stderr line per order whose verification errored (cron mails stderr), then how many more."""
    lines = []
    for failure in report.failures[:limit]:
        who = (f"order {failure.order_number} (id {failure.order_id})" if failure.order_number
               else f"order id {failure.order_id}")
        streak = f" ({failure.runs} runs in a row)" if failure.runs > 1 else ""
        lines.append(printable(f"payverify: {who} could not be verified{streak}: {failure.error}"))
    if report.errors > len(lines):
        more = report.errors - len(lines)
        lines.append(f"payverify: and {more} more order{'s' if more != 1 else ''} could not be verified "
                     "(see the log file)")
    return lines


def _answer_line(check: CheckResult) -> str:
    answer = check.answer
    checkout = answer.checkout
    if checkout is None:
        return f"SumUp:    {answer.reason}"
    if checkout.amount is not None and checkout.currency:
        amount = format_amount(checkout.amount, checkout.currency)
    else:
        amount = "no amount"
    return (f"SumUp:    {checkout.status}, {amount}, merchant {checkout.merchant_code}, "
            f"reference {checkout.checkout_reference} (HTTP {answer.http_status})")


def print_check(check: CheckResult) -> None:
    result = check.result
    order = result.order
    say(f"Order:    {order.order_number} (id {order.id}), {order.status}, "
        f"{format_amount(order.total, order.currency)}, event '{order.event_title}'")
    say(f"Customer: {order.holder_name or '(no name)'}; artist {order.artist_name}")
    for item in result.items:
        price = format_amount(item.unit_price, order.currency)
        say(f"Item:     {item.quantity} x {item.ticket_type_name} at {price}")
    say(f"Checkout: {order.sumup_checkout_id or '(none)'}")
    say(_answer_line(check))
    for t in result.answer.checkout.transactions if result.answer.checkout else ():
        amount = format_amount(t.amount, t.currency) if t.amount is not None and t.currency else "?"
        say(f"          transaction {t.transaction_code or t.id}: {t.status}, {amount}")
    say(f"Decision: {result.decision.outcome}: {result.decision.reason}")
    settled = result.settled
    if settled is None:
        say("Done:     nothing (dry run)")
    elif settled.applied:
        done = [f"order is now {settled.outcome}"]
        if settled.tickets_issued:
            done.append(f"{settled.tickets_issued} tickets issued")
        if settled.queued:
            done.append("queued " + ", ".join(settled.queued))
        say("Done:     " + "; ".join(done))
    else:
        say(f"Done:     nothing changed ({settled.outcome})")
    for mail in check.outbox:
        when = f", sent {mail.sent_at:%Y-%m-%d %H:%M UTC}" if mail.sent_at else ""
        error = f", last error: {mail.last_error}" if mail.last_error and mail.status != "sent" else ""
        say(f"Mail:     {mail.kind} to {', '.join(mail.recipients)}: {mail.status}"
            f" (attempts {mail.attempts}{when}{error})")
    if not check.outbox:
        say("Mail:     none queued for this order")
    timed = check.timed_confirmation
    if timed is not None and timed.ticket_clock_started_at is not None and timed.time_to_ticket_seconds is not None:
        began = timed.ticket_clock_started_at.astimezone(UTC)
        say(f"Ticket:   confirmation accepted {duration(timed.time_to_ticket_seconds)} after the customer "
            f"began waiting ({began:%Y-%m-%d %H:%M:%S} UTC)")
    if check.audit:
        say("Attempts: (newest first)")
    for line in check.audit:
        sumup = line.sumup_status or (f"HTTP {line.http_status}" if line.http_status else "no answer")
        say(f"  {line.created_at:%Y-%m-%d %H:%M:%S} {line.command:<6} {sumup:<10} "
            f"{line.outcome:<22} {line.reason}")


def check_json(check: CheckResult) -> dict[str, Any]:
    result = check.result
    order = result.order
    timed = check.timed_confirmation
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
        "attempts": [asdict(line) for line in check.audit],
        "mail": [asdict(mail) for mail in check.outbox],
        "time_to_ticket_seconds": None if timed is None else timed.time_to_ticket_seconds,
    }


class ProgressBar:
    """A progress bar on a terminal (replays of thousands of orders); nothing otherwise."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: ClickProgressBar[int] | None = None
        self._length = 0  # the bar's, as it was created with
        self._shown = 0

    def update(self, done: int, due: int) -> None:
        if not self.enabled or due < 2:
            return
        if self._bar is None:
            # sys.stderr: click 8.5 deprecates get_text_stream (a Python 2 shim), to be removed in click 9.
            self._bar = click.progressbar(length=due, label="Verifying", file=sys.stderr)
            self._length = due
            self._bar.__enter__()
        self._bar.update(done - self._shown)
        self._shown = done

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.update(self._length - self._shown)
            self._bar.__exit__(None, None, None)


def duration(seconds: float) -> str:
    """`42 s`, `182 s (3m 02s)`, `5410 s (1h30m)`: the seconds the metrics count, and what they mean to a person."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole} s ({whole // 60}m {whole % 60:02d}s)"
    return f"{whole} s ({whole // 3600}h{whole % 3600 // 60:02d}m)"


def age(seconds: int) -> str:
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    if minutes < 48 * 60:
        return f"{minutes // 60}h{minutes % 60:02d}m"
    return f"{minutes // 1440}d{(minutes % 1440) // 60:02d}h"


def print_pending(orders: list[PendingRow], *, stuck_minutes: float | None) -> None:
    if not orders:
        what = f"stuck for more than {stuck_minutes:g} minutes" if stuck_minutes else "awaiting verification or review"
        say(f"No orders {what}.")
        return
    say(f"{'ORDER':<14} {'STATUS':<22} {'AGE':>7}  {'ARTIST':<20} {'LAST SUMUP ANSWER':<30} {'CHECKS':>6} "
        f"{'ERRORS':>6}  MAIL")
    for o in orders:
        answer = o.last_sumup_status or (f"HTTP {o.last_http_status}" if o.last_http_status else "")
        if not answer:
            answer = "not checked yet" if not o.checks else (o.last_outcome or "")
        mail = ", ".join(part for part in (f"{o.mail_queued} queued" if o.mail_queued else "",
                                           f"{o.mail_failed} FAILED" if o.mail_failed else "") if part) or "-"
        errors = o.consecutive_errors
        # Escaped before padding, so the columns line up; a cut is shown by a final "…".
        number, status = printable(o.order_number), printable(o.status)
        artist, answer = printable(o.artist_name, 20), printable(answer, 30)
        say(f"{number:<14} {status:<22} {age(o.age_seconds):>7}  {artist:<20} "
            f"{answer:<30} {o.checks:>6} {errors or '-':>6}  {mail}")
        if errors and o.first_error_at is not None:  # the error itself on its own line: too long for a column
            since = o.first_error_at.astimezone(UTC)
            say(f"{'':<14} last error ({errors} run(s) in a row since {since:%Y-%m-%d %H:%M} UTC): "
                f"{o.last_error}")
    say(f"{len(orders)} orders. `payverify check ORDER` shows one in full.")

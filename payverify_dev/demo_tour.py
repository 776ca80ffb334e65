"""The demo's second and third acts: a real `payverify watch` settling one customer's order as the site's
flow plays it, then a real `payverify reconcile` finding a refund made after the tickets were issued.

Both run as the commands production runs (subprocesses of `python -m payverify`), against the demo's
throwaway database, the SumUp simulator and the mail capture; a watch is never left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import click

from payverify.db import Database
from payverify.errors import PayverifyError
from payverify.mail.kinds import CONFIRMATION
from payverify_dev.seed import PLATFORM_KEY, PLATFORM_MERCHANT, Seeder
from payverify_dev.smtp_capture import SmtpCapture
from payverify_dev.sumup_server import FakeSumUp, checkout_body

WAIT_SECONDS = 60.0  # for the watch to act: it takes about a second; this is for a loaded CI machine
AT_SUMUP_SECONDS = 3.0  # the customer types their card details
STILL_PENDING_SECONDS = 1.5  # back on the site, SumUp has not recorded the payment yet


class DemoFailed(PayverifyError):
    """A command the demo ran did not do what the demo shows (exit 1, one line)."""


def payverify_env(url: str, sumup: FakeSumUp, smtp: SmtpCapture, log_file: Path) -> dict[str, str]:
    """The environment of a `payverify` process pointed at the demo (nothing from the caller's shell
    that could name a real database or account)."""

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAYVERIFY_", "SUMUP_"))}
    env.update({
        "PAYVERIFY_DATABASE_URL": url, "SUMUP_API_BASE_URL": sumup.url, "SUMUP_API_KEY": PLATFORM_KEY,
        "SUMUP_CLIENT_ID": sumup.client_id, "SUMUP_CLIENT_SECRET": sumup.client_secret,
        "PAYVERIFY_SMTP_URL": smtp.url(), "PAYVERIFY_MAIL_FROM": "tickets@demo.example",
        "PAYVERIFY_SITE_URL": "https://tickets.demo.example", "PAYVERIFY_SITE_NAME": "Jersey Live (demo)",
        "PAYVERIFY_LOG_FILE": str(log_file), "PAYVERIFY_SUMUP_READ_TIMEOUT": "2",
    })
    return env


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "payverify", *args], env=env, capture_output=True, text=True,
                          timeout=120)


@contextmanager
def _watch(env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """A running `payverify watch`; killed if the demo fails before stopping it."""
    proc = subprocess.Popen([sys.executable, "-m", "payverify", "watch"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def _until(check: Callable[[], bool], what: str, proc: subprocess.Popen | None = None) -> float:
    started = time.monotonic()
    while not check():
        if proc is not None and proc.poll() is not None:
            raise DemoFailed(f"the demo's watch exited ({proc.returncode}) before {what}; see the log file")
        if time.monotonic() - started > WAIT_SECONDS:
            raise DemoFailed(f"the demo waited {WAIT_SECONDS:.0f} s for {what}; see the log file")
        time.sleep(0.05)
    return time.monotonic() - started


def watch_act(db: Database, seed: Seeder, sumup: FakeSumUp, env: dict[str, str], event: int, ticket_type: int) -> None:
    """One customer's purchase while `payverify watch` runs, timed from their return to the mail server."""
    click.echo("\n== 2. payverify watch: a customer buys while the watch runs\n")
    order = seed.order([(ticket_type, 2)], event_id=event, status="pending", sumup_status="PENDING",
                       age=timedelta(seconds=0), first_name="Dina")
    started = time.monotonic()

    def say(text: str) -> None:
        click.echo(f"  {time.monotonic() - started:5.1f} s  {text}")

    with _watch(env) as proc:
        say(f"site: order {order.order_number} created `pending`, its SumUp checkout PENDING; "
            "the customer is on SumUp's page")
        say(f"`payverify watch` started (pid {proc.pid}; SIGTERM stops it): it leaves a customer at SumUp alone")
        time.sleep(AT_SUMUP_SECONDS)
        with db.transaction() as tx:  # what the site does when the browser comes back from SumUp
            tx.fetch_sql("UPDATE orders_order SET status = 'pending_verification', updated_at = now() "
                         "WHERE id = %(id)s RETURNING id", {"id": order.id})
        say("site: the customer is back; order set `pending_verification` (proves nothing yet)")
        _until(lambda: sumup.get_count(order.checkout_id) >= 1, "the watch to ask SumUp", proc)
        say("watch asked SumUp at once: still PENDING (the payment is not recorded yet)")
        time.sleep(STILL_PENDING_SECONDS)
        sumup.update_checkout(order.checkout_id, **checkout_body(order.checkout_id, order.order_number, order.total,
                                                                 "GBP", order.merchant_code, "PAID"))
        say("SumUp now says PAID")

        def sent() -> dict | None:
            with db.transaction() as tx:
                found = tx.fetch_sql("SELECT sent_at, time_to_ticket_seconds FROM payverify_outbox "
                                     "WHERE order_id = %(id)s AND kind = %(kind)s AND status = 'sent'",
                                     {"id": order.id, "kind": CONFIRMATION})
            return found[0] if found else None

        _until(lambda: sent() is not None, "the confirmation to be sent", proc)
        row = sent()
        assert row is not None
        say("watch: order completed, tickets issued, the confirmation accepted by the mail server")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        say(f"SIGTERM to the watch: it finished what it had in hand and exited {proc.returncode}")
        if proc.returncode != 0:
            raise DemoFailed(f"the demo's watch exited {proc.returncode}: {err.strip()[-300:]}")
    click.echo(f"\n  Time to ticket: {row['time_to_ticket_seconds']:.1f} s from the customer's return to the "
               "mail server accepting their tickets\n  (payverify_outbox.time_to_ticket_seconds; "
               "`payverify check ORDER` and the metrics report it too).")


def reconcile_act(db: Database, sumup: FakeSumUp, env: dict[str, str], order_id: int) -> str:
    """A refund made at SumUp after the sweep completed the order, found by a real `payverify reconcile`.
    Returns the refunded order's number."""
    with db.transaction() as tx:
        (order,) = tx.fetch_sql("SELECT order_number, sumup_transaction_code, total FROM orders_order "
                                "WHERE id = %(id)s", {"id": order_id})
    number, code, total = order["order_number"], order["sumup_transaction_code"], Decimal(order["total"])
    click.echo("\n== 3. payverify reconcile: SumUp's books against the orders\n")
    sumup.update_transaction(PLATFORM_MERCHANT, code, status="REFUNDED", refunded_amount=total)
    click.echo(f"  Someone refunded {number} ({total} GBP, completed by the sweep above) in SumUp's dashboard.\n"
               "  No order changes for that; `payverify reconcile` (daily, from a timer) reads every merchant\n"
               "  account's transactions and reports what disagrees:\n")
    result = _run(env, "reconcile")
    for line in result.stdout.splitlines():
        click.echo(f"    {line}" if line else "")
    click.echo(f"\n  exit {result.returncode}" + ("" if result.returncode == 0 else
               ": one account could not be read (Marrow & Pine must reconnect SumUp, as the sweep's\n"
               "  alert said); the others were."))
    click.echo(f"  Besides the refund of {number}: the payments of two orders the sweep left for manual review "
               "(the wrong\n  amount, paid after the event), seen from SumUp's side: no tickets were issued "
               "for that money.")
    if result.returncode not in (0, 7) or number not in result.stdout:
        raise DemoFailed(f"the demo's reconcile did not report the refund of {number} "
                          f"(exit {result.returncode}): {result.stderr.strip()[-300:]}")
    return number

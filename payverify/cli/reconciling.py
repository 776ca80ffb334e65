"""`payverify reconcile`: the command and its three outputs (terminal summary, --json, --csv)."""

from __future__ import annotations

import csv
import json
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, TextIO

import click

from payverify.cli.commands import cli
from payverify.cli.params import Since
from payverify.printable import printable

CSV_COLUMNS = ("merchant_code", "transaction_code", "timestamp", "payment_type", "type", "status", "amount",
               "currency", "refunded_amount", "order_number", "order_status")


@cli.command()
@click.option("--since", type=Since(), metavar="T",
              help="Transactions since T (ISO 8601 date or datetime, UTC if no offset; or 90m, 48h, 7d). "
                   "Without it: what changed since the last run, per account (7 days back the first time).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Write one row per SumUp transaction, with the order it matched, to FILE (replaced "
                   "whole, mode 0600; a symlink there is refused).")
@click.option("--dry-run", is_flag=True, help="Report only: no alert, nothing remembered, no cursor moved.")
@click.pass_obj
def reconcile(config_file, since, as_json, csv_file, dry_run) -> int:
    """Compare SumUp's transaction history with the orders, and report what disagrees.

    Reads every merchant account payverify can reach (the platform key's, every artist connected
    with OAuth) and finds payments refunded or charged back after their tickets were issued,
    payments no completed order accounts for, completed orders with no payment, and amounts that
    differ. Changes no order: staff get one alert per account listing what is new, recorded with the
    account's cursor (a run killed anywhere loses nothing: the next one reads again). Under cron it is
    silent unless something must be read. Exit 0 when every account was read, 7 when one was not.

    \b
    Example:
      payverify reconcile
      payverify reconcile --since 7d --csv takings.csv
    """
    from payverify.modes.reconcile_run import reconcile_run

    if csv_file is not None:
        _refuse_link(csv_file)
    rt = start_runtime(config_file)
    with _csv(csv_file) as sink:
        result, status = reconcile_run(rt, since=since, dry_run=dry_run, row_sink=sink)
    if as_json:
        click.echo(json.dumps(as_json_object(result), indent=2))
    elif sys.stdout.isatty() or dry_run or result.new or not result.all_read or any(a.skipped for a in result.accounts):
        print_summary(result)
    return status


def start_runtime(config_file):
    from payverify.modes.runtime import start

    return start(config_file)


def _refuse_link(path: str) -> None:
    """--csv names the file itself: a symbolic link or a device there is refused before anything runs
    (the write below would replace a link, never follow it; this says so instead of surprising)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise click.BadParameter(f"{path} cannot be read: {exc.strerror}", param_hint="--csv") from None
    if stat.S_ISLNK(mode) or not stat.S_ISREG(mode):
        what = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
        raise click.BadParameter(f"{path} is {what}: name a regular file (it is replaced whole, mode 0600)",
                                 param_hint="--csv")


@contextmanager
def _csv(path: str | None) -> Iterator[Any]:
    """The CSV is written to a new file beside FILE (mode 0600, created exclusively: never through a
    link, whatever the umask) and renamed over FILE when the run ends: a symlink put at FILE meanwhile
    is replaced, not followed, and a run that fails leaves FILE as it was."""
    if path is None:
        yield None
        return
    target = os.path.abspath(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp",
                                     dir=os.path.dirname(target))
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            yield CsvSink(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, target)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


# A cell beginning so is a formula to a spreadsheet (OWASP, CSV injection): text from SumUp or the site
# gets a leading ' there, and the spreadsheet shows it as text. The amounts are payverify's own
# Decimals, written as numbers: "-5.00" stays a number the accountant can add up.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str | None) -> str:
    text = printable(value or "")
    return "'" + text if text.startswith(_FORMULA_START) else text


class CsvSink:
    """One row per SumUp transaction, as the reconciliation reads them (nothing kept in memory)."""

    def __init__(self, fh: TextIO) -> None:
        self._writer = csv.writer(fh)
        self._writer.writerow(CSV_COLUMNS)

    def __call__(self, merchant_code: str, item, order) -> None:
        # Each cell one line of visible text: a line break or escape from SumUp or the site stays in its
        # cell; and no text cell begins like a formula.
        self._writer.writerow([
            _text(merchant_code), _text(item.transaction_code), item.timestamp.isoformat() if item.timestamp else "",
            _text(item.payment_type), _text(item.type), _text(item.status),
            "" if item.amount is None else str(item.amount), _text(item.currency),
            "" if item.refunded_amount is None else str(item.refunded_amount),
            _text(order.order_number if order else None), _text(order.status if order else None)])


def _decimal(value, currency: str | None = None) -> str | None:
    """A decimal string in the currency's minor units where it is known (37.50, 0.00; JPY 500)."""
    if value is None:
        return None
    from payverify.money import quantize

    try:
        return str(quantize(value, currency)) if currency else str(value)
    except (ValueError, ArithmeticError):  # a currency code SumUp invented: as it came
        return str(value)


def as_json_object(result) -> dict[str, Any]:
    from payverify.modes.reconcile import as_dict

    totals = result.totals.by_currency() if result.totals else {}
    return {
        "window": {"since": result.since.isoformat() if result.since else None,
                   "incremental": result.since is None,
                   "accounts": {a.merchant_code or a.label: a.since.isoformat() if a.since else None
                                for a in result.accounts}},
        "accounts": [{"merchant_code": a.merchant_code, "label": a.label, "ok": a.ok, "error": a.error,
                      "transactions": a.transactions, "skipped": a.skipped} for a in result.accounts],
        "totals": {currency: {"sumup": _decimal(sumup, currency), "orders": _decimal(orders, currency),
                              "difference": _decimal(sumup - orders, currency)}
                   for currency, (sumup, orders) in sorted(totals.items())},
        "discrepancies": [{**as_dict(d), "amount": _decimal(d.amount, d.currency), "new": d in result.new}
                          for d in result.discrepancies],
        "dry_run": result.dry_run,
    }


def print_summary(result) -> None:
    def echo(line: str) -> None:  # artists' names, SumUp's codes and errors: one line each, escaped
        click.echo(printable(line))

    for account in result.accounts:
        where = account.merchant_code or "merchant code unknown"
        skipped = f", {account.skipped} skipped (not understood: see the log file)" if account.skipped else ""
        if account.ok:
            echo(f"{account.label} ({where}): {account.transactions} transaction(s) read{skipped}")
        else:
            echo(f"{account.label} ({where}): NOT READ: {account.error}{skipped}")
    days = result.totals.days() if result.totals else []
    if days:
        echo("")
        echo(f"{'merchant':<12} {'day':<10} {'cur':<3} {'SumUp online':>14} {'orders':>14} {'difference':>12}")
        for merchant, day, currency, sumup, orders in days:
            echo(f"{printable(merchant):<12} {day.isoformat():<10} {printable(currency):<3} {sumup:>14} {orders:>14} "
                 f"{sumup - orders:>12}")
    if result.totals and result.totals.other:
        others = ", ".join(f"{n} {what}" for what, n in sorted(result.totals.other.items()))
        echo(f"not ticket payments (counted apart): {others}")
    echo("")
    if not result.discrepancies:
        echo("No discrepancies.")
        return
    new = sum(1 for d in result.discrepancies if d in result.new)
    echo(f"{len(result.discrepancies)} discrepanc{'y' if len(result.discrepancies) == 1 else 'ies'}"
         f" ({new} new{', not alerted: dry run' if result.dry_run else ''}):")
    for d in result.discrepancies:
        mark = "NEW " if d in result.new else "    "
        order = printable(f"{d.order_number} ({d.order_status})") if d.order_number else "no order"
        echo(f"{mark}{d.finding:<30} {order:<28} {printable(d.transaction_code or '-'):<12} "
             f"{_decimal(d.amount) or '-':>10} {d.currency or ''}")
        echo(f"     {d.detail}")

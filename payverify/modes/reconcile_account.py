"""One merchant account's part of `payverify reconcile`: its SumUp transaction history read page by
page from its window and judged in chunks (orders/reconcile.py judges), the orders looked up per
chunk, then the completed orders of the window whose payment the history did not show. Memory does
not grow with the history; each finding is appended as it is made, so what was found before an
error is kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

import structlog

from payverify import faults
from payverify.db import Database
from payverify.modes.payment_owner import near, owner, reconciled_order
from payverify.orders import reconcile as judge
from payverify.orders.reconcile import Discrepancy, ReconciledOrder, Totals
from payverify.secret import Secret
from payverify.sumup.client import Reply, SumUpClient
from payverify.sumup.credentials import Credentials, TokenOwner
from payverify.sumup.history import HistoryItem, HistoryUnreadable, ItemUnreadable, Skipped, parse_item, walk

log = structlog.get_logger("payverify.modes.reconcile")

FIRST_RUN_DAYS = 7  # how far back the first incremental run of an account looks
PAGE_LIMIT = "100"
CHUNK = 500  # history items judged per order lookup


@dataclass
class Account:
    merchant_code: str | None
    label: str  # "platform API key" or the artist's name
    owner: TokenOwner
    ok: bool = True
    error: str | None = None
    transactions: int = 0
    skipped: int = 0  # transactions whose fields could not be taken: logged, not judged
    since: datetime | None = None


# One SumUp transaction and the order it matched (None), for the accountant's CSV.
RowSink = Callable[[str, HistoryItem, ReconciledOrder | None], None]


def read_account(db: Database, client: SumUpClient, credentials: Credentials, account: Account, *,
                 since: datetime | None, totals: Totals, found: list[Discrepancy], started: datetime,
                 settling_since: datetime, deadline: float, row_sink: RowSink | None) -> None:
    """Read one account's history to its end, from `since` (--since) or else from its cursor,
    appending to `found` as it goes (what was found before an exception is kept: each finding stands
    on its own)."""
    code = account.merchant_code
    assert code is not None
    if since is not None:
        window: dict[str, str | list[str]] = {"oldest_time": since.isoformat()}
        account.since = since
    else:
        with db.transaction() as tx:
            cursor = tx.one("reconcile_cursor", merchant_code=code)
        account.since = cursor["changes_since"] if cursor else started - timedelta(days=FIRST_RUN_DAYS)
        window = {"changes_since": account.since.isoformat()}
    params: dict[str, str | list[str]] = {"order": "ascending", "limit": PAGE_LIMIT, **window}

    def fetch(next_query: str | None) -> Reply:
        def request(token):
            return client.list_transactions(code, token, params=None if next_query else params, next_query=next_query)

        return credentials.call(account.owner, request, about=f"the transaction history of {code}").reply

    faults.point("in_reconcile_account")
    settleable: list[dict[str, Any]] | None = None  # this account's orders a sweep may still settle

    def in_sweeps_reach() -> list[dict[str, Any]]:
        nonlocal settleable
        if settleable is None:  # once per account, and only when a young payment needs it
            with db.transaction() as tx:
                settleable = tx.all("reconcile_settleable_orders", merchant_code=code, rescue_since=settling_since)
        return settleable

    seen: set[str] = set()  # the codes completed orders name that the window has: memory as the orders'
    def skipped(item: Skipped) -> None:
        account.skipped += 1
        log.warning("reconcile.transaction_skipped", merchant_code=code, transaction_code=item.transaction_code,
                    reason=item.reason)

    for chunk in _chunks(walk(fetch, deadline=deadline, on_skipped=skipped), CHUNK):
        account.transactions += len(chunk)
        payments = [i for i in chunk if judge.is_ticket_payment(i) and i.transaction_code]
        named: dict[str, ReconciledOrder] = {}
        with db.transaction() as tx:
            for row in tx.all("reconcile_orders_by_code", codes=[i.transaction_code for i in payments],
                              merchant_code=code):
                named_by = reconciled_order(row)
                if named_by.status == "completed" or row["transaction_code"] not in named:  # completed wins
                    named[row["transaction_code"]] = named_by
        for item in chunk:
            totals.payment(code, item)
            order = named.get(item.transaction_code) if item.transaction_code else None
            judged = item.transaction_code if judge.is_ticket_payment(item) else None  # a ticket payment's code
            if judged and order is not None and order.status == "completed":
                seen.add(judged)
                totals.order(order, on=item.timestamp)  # the same day as its payment, whenever it was settled
                found.extend(judge.judge_completed(item, order, code))
            elif judged and item.status == "SUCCESSFUL" and item.timestamp is None:
                # Whether a sweep may still settle it cannot be told without its time.
                skipped(Skipped(judged, "a successful payment without a time"))
            elif judged and item.status == "SUCCESSFUL" and item.timestamp is not None:
                _in_budget(deadline, account)
                unsure = False
                if order is None and item.timestamp >= settling_since:
                    # Young: it waits only for an order a sweep may still settle, so look among those
                    # first (read once per account); when none of them is its owner, it is reported,
                    # naming whose it is if the likely orders tell.
                    order, unsure = owner(db, client, credentials, code, item, near(in_sweeps_reach(), item))
                    if order is None and not unsure:
                        order, _ = owner(db, client, credentials, code, item)
                elif order is None:
                    order, unsure = owner(db, client, credentials, code, item)  # the CSV names it too
                if not judge.waits_for_a_sweep(item.timestamp, order, settling_since, owner_unsure=unsure):
                    found.append(judge.paid_without_order(item, code, order))
            if row_sink is not None:
                row_sink(code, item, order)
    with db.transaction() as tx:
        completed = [reconciled_order(o)
                     for o in tx.all("reconcile_completed_since", since=account.since, merchant_code=code)]
    for order in completed:
        if not order.transaction_code:
            totals.order(order, on=order.paid_at)
            found.append(judge.completed_without_payment(order))
        elif order.transaction_code not in seen:
            # Paid before the window, completed in it (a late verification): ask for that payment itself.
            _in_budget(deadline, account)
            try:
                found.extend(_check_payment(client, credentials, account, order))
            except ItemUnreadable as exc:
                skipped(exc.skipped)


def _in_budget(deadline: float, account: Account) -> None:
    if time.monotonic() > deadline:
        raise HistoryUnreadable(f"time budget spent after {account.transactions} transactions")


def _chunks(items: Iterator[HistoryItem], size: int) -> Iterator[list[HistoryItem]]:
    while chunk := list(islice(items, size)):
        yield chunk


def _check_payment(client: SumUpClient, credentials: Credentials, account: Account,
                   order: ReconciledOrder) -> list[Discrepancy]:
    code, transaction = account.merchant_code, order.transaction_code
    assert code is not None and transaction is not None

    def request(token: Secret) -> Reply:
        return client.get_transaction(code, token, transaction)

    reply = credentials.call(account.owner, request, about=f"transaction {transaction} of {code}").reply
    if reply.status == 404:
        return [judge.completed_without_payment(order)]
    if reply.status != 200:
        raise HistoryUnreadable(f"SumUp answered HTTP {reply.status} for one transaction")
    return judge.judge_completed(parse_item(reply.text), order, code)

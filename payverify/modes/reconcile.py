"""`payverify reconcile`: every SumUp merchant account payverify can reach, its transaction history
against the orders (orders/reconcile.py judges). It changes no order: it reports, and alerts staff
once per discrepancy through the outbox.

Accounts: the platform API key's own (GET /v0.1/me) and every artist connected with OAuth, with the
token the sweep would use (Credentials: a 401 refreshes once and retries once). An account that
cannot be read, for whatever reason, is reported as such and the others carry on. The history is
read page by page and judged in chunks, so memory does not grow with it; the orders are looked up
per chunk. What an account's reading found is recorded, and alerted, in the one transaction that
moves its cursor: a run killed anywhere has either recorded an account's findings and moved past
them, or done neither, and the next run reads that account again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from payverify import faults
from payverify.config import Settings
from payverify.db import Database
from payverify.errors import DatabaseUnavailable, PayverifyError
from payverify.mail import outbox
from payverify.modes.attempt import describe
from payverify.orders import reconcile as judge
from payverify.orders.reconcile import Discrepancy, ReconciledOrder, Totals
from payverify.secret import Secret
from payverify.sumup.checkout import BodyNotUnderstood, parse_checkout
from payverify.sumup.client import Reply, SumUpClient, SumUpUnavailable
from payverify.sumup.credentials import Credentials, TokenOwner
from payverify.sumup.history import (
    HistoryItem,
    HistoryUnreadable,
    ItemUnreadable,
    Skipped,
    merchant_code_of,
    parse_item,
    walk,
)

log = structlog.get_logger("payverify.modes.reconcile")

FIRST_RUN_DAYS = 7  # how far back the first incremental run of an account looks
CURSOR_OVERLAP = timedelta(minutes=10)  # SumUp's clock and ours differ: re-read a little, keys de-duplicate
PAGE_LIMIT = "100"
CHUNK = 500  # history items judged per order lookup
OWNER_CANDIDATES = 3  # not-completed orders whose checkout is asked about an unexplained payment
OWNER_WINDOW = (timedelta(hours=26), timedelta(hours=1))  # created this long before it, or after (clocks)
PLATFORM = TokenOwner(artist_id=0, artist_name="the platform API key", oauth=False)


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


@dataclass
class Reconciliation:
    run_id: str
    dry_run: bool
    since: datetime | None  # --since, else None (each account from its own cursor)
    accounts: list[Account] = field(default_factory=list)
    discrepancies: list[Discrepancy] = field(default_factory=list)
    new: list[Discrepancy] = field(default_factory=list)  # not reported by an earlier run (nor account)
    totals: Totals | None = None

    @property
    def all_read(self) -> bool:
        return all(a.ok for a in self.accounts)


# One SumUp transaction and the order it matched (None), for the accountant's CSV.
RowSink = Callable[[str, HistoryItem, ReconciledOrder | None], None]


def reconcile(settings: Settings, db: Database, client: SumUpClient, run_id: str, *, since: datetime | None = None,
              dry_run: bool = False, row_sink: RowSink | None = None) -> Reconciliation:
    def reconnect_alert(artist_id: int | None, artist_name: str, problem: str) -> None:
        if not dry_run:  # the same alert, de-duplicated the same way, as the sweep's
            with db.transaction() as tx:
                outbox.queue(tx, settings, outbox.reconnect_alert(artist_id, artist_name, problem, settings))

    credentials = Credentials(settings, client, db, on_auth_problem=reconnect_alert)
    result = Reconciliation(run_id=run_id, dry_run=dry_run, since=since,
                            totals=Totals(zone=ZoneInfo(settings.timezone)))
    with db.transaction() as tx:
        started = tx.require_one("now")["now"]
    # The rescue window's start: a payment younger than it whose order a sweep may still settle is
    # judged on a later run, so each account's cursor is set back to here.
    settling_since = started - timedelta(hours=settings.policy.rescue_hours)
    result.accounts = _accounts(settings, db, client, credentials)
    seen_merchants: set[str] = set()
    for account in result.accounts:
        if not account.ok or account.merchant_code is None or account.merchant_code in seen_merchants:
            continue
        seen_merchants.add(account.merchant_code)
        deadline = time.monotonic() + settings.time_budget_seconds  # each account its own budget
        found: list[Discrepancy] = []
        try:
            _reconcile_account(db, client, credentials, account, result, found, started, settling_since,
                               deadline, row_sink)
        except DatabaseUnavailable:
            raise  # no account can be read or recorded (exit 4); nothing of this one was moved
        except Exception as exc:  # noqa: BLE001 - one account's trouble, whatever it is, is that account's
            _unreadable(account, exc)
        # The same fact seen twice in an account (a page overlap, a payment also asked for by its code): once.
        found = list({d.key: d for d in found}.values())
        result.discrepancies.extend(found)
        # What an unread account found so far is kept too; its cursor stays where it was.
        cursor = settling_since - CURSOR_OVERLAP if account.ok and since is None else None
        try:
            result.new.extend(_keep(settings, db, result, account, found, cursor))
        except DatabaseUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - nothing was recorded and the cursor did not move
            _unreadable(account, exc)
        faults.point("after_reconcile_account")
    return result


def _unreadable(account: Account, exc: Exception) -> None:
    expected = isinstance(exc, HistoryUnreadable | SumUpUnavailable | PayverifyError)
    account.ok, account.error = False, _reason(exc)
    log.warning("reconcile.account_unreadable", merchant_code=account.merchant_code, error=account.error,
                exc_info=not expected)  # an unexpected one's traceback goes to the log file


def _reason(exc: Exception) -> str:
    """One line, no secret: our own errors' vetted messages, else only the exception's type."""
    return exc.reason if isinstance(exc, HistoryUnreadable) else describe(exc)


def _accounts(settings: Settings, db: Database, client: SumUpClient, credentials: Credentials) -> list[Account]:
    accounts: list[Account] = []
    if settings.sumup_api_key:
        platform = Account(merchant_code=None, label="platform API key", owner=PLATFORM)
        try:
            reply = credentials.call(PLATFORM, client.get_me, about="the platform account (/v0.1/me)").reply
            code = merchant_code_of(reply.text) if reply.status == 200 else None
            if code is None:
                platform.ok, platform.error = False, f"/v0.1/me answered HTTP {reply.status} without a merchant code"
            platform.merchant_code = code
        except DatabaseUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - as for any account: this one is not read, the others are
            _unreadable(platform, exc)
        accounts.append(platform)
    with db.transaction() as tx:
        artists = tx.all("reconcile_artist_accounts")
    for artist in artists:
        accounts.append(Account(merchant_code=artist["merchant_code"], label=artist["name"],
                                owner=TokenOwner(artist["id"], artist["name"], oauth=True)))
    return accounts


def _reconcile_account(db: Database, client: SumUpClient, credentials: Credentials, account: Account,
                       result: Reconciliation, found: list[Discrepancy], started: datetime,
                       settling_since: datetime, deadline: float, row_sink: RowSink | None) -> None:
    """Read one account's history to its end, appending to `found` as it goes (what was found before an
    exception is kept: each finding stands on its own)."""
    code = account.merchant_code
    assert code is not None and result.totals is not None
    if result.since is not None:
        window: dict[str, str | list[str]] = {"oldest_time": result.since.isoformat()}
        account.since = result.since
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

    totals = result.totals
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
                named_by = _order(row)
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
                    order, unsure = _owner(db, client, credentials, code, item, _near(in_sweeps_reach(), item))
                    if order is None and not unsure:
                        order, _ = _owner(db, client, credentials, code, item)
                elif order is None:
                    order, unsure = _owner(db, client, credentials, code, item)  # the CSV names it too
                if not judge.waits_for_a_sweep(item.timestamp, order, settling_since, owner_unsure=unsure):
                    found.append(judge.paid_without_order(item, code, order))
            if row_sink is not None:
                row_sink(code, item, order)
    with db.transaction() as tx:
        completed = [_order(o) for o in tx.all("reconcile_completed_since", since=account.since, merchant_code=code)]
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


def _order(row: dict[str, Any]) -> ReconciledOrder:
    return ReconciledOrder(id=row["id"], order_number=row["order_number"], status=row["status"], total=row["total"],
                    currency=row["currency"], merchant_code=row["merchant_code"],
                    transaction_code=row["transaction_code"], paid_at=row["paid_at"], created_at=row["created_at"])


def _near(orders: list[dict[str, Any]], item: HistoryItem) -> list[dict[str, Any]]:
    """Those of `orders` that may be this payment's, nearest first, as reconcile_open_orders_near picks."""
    if item.amount is None or item.currency is None or item.timestamp is None:
        return []
    paid_at, currency = item.timestamp, item.currency.upper()
    lo, hi = paid_at - OWNER_WINDOW[0], paid_at + OWNER_WINDOW[1]
    near = [o for o in orders
            if o["total"] == item.amount and o["currency"].upper() == currency and lo <= o["created_at"] <= hi]
    return sorted(near, key=lambda o: (abs(o["created_at"] - paid_at), o["id"]))


def _owner(db: Database, client: SumUpClient, credentials: Credentials, code: str, item: HistoryItem,
           candidates: list[dict[str, Any]] | None = None) -> tuple[ReconciledOrder | None, bool]:
    """The not-completed order whose checkout lists this payment, if one of the likely ones (or of
    `candidates`) does; and whether "none" is unsure: a likely checkout could not be read, or there
    were more likely ones than are asked about (an on-sale burst of orders of one amount)."""
    if item.amount is None or item.currency is None or item.timestamp is None:
        return None, True
    if candidates is None:
        with db.transaction() as tx:
            candidates = tx.all("reconcile_open_orders_near", amount=item.amount, currency=item.currency,
                                merchant_code=code, paid_at=item.timestamp, limit=OWNER_CANDIDATES + 1)
    unsure = len(candidates) > OWNER_CANDIDATES
    for row in candidates[:OWNER_CANDIDATES]:
        owner = TokenOwner(row["artist_id"], row["artist_name"], row["artist_uses_oauth"])
        checkout_id: str = row["checkout_id"]

        def request(token: Secret, checkout_id: str = checkout_id) -> Reply:
            return client.get_checkout(checkout_id, token)

        try:
            reply = credentials.call(owner, request, about=f"checkout of order {row['order_number']}").reply
        except (SumUpUnavailable, PayverifyError, ValueError):
            unsure = True  # an old payment is reported all the same, without its order
            continue
        if reply.status != 200:
            unsure = unsure or reply.status != 404  # 404: that checkout is no one's, so not this payment's
            continue
        try:
            checkout = parse_checkout(reply.text)
        except BodyNotUnderstood:
            unsure = True
            continue
        if any(t.transaction_code == item.transaction_code for t in checkout.transactions):
            return _order(row), False
    return None, unsure


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


def _keep(settings: Settings, db: Database, result: Reconciliation, account: Account, found: list[Discrepancy],
          cursor: datetime | None) -> list[Discrepancy]:
    """In one transaction: remember what this account's reading found, queue one alert listing what is
    new, and move the account's cursor (None: it stays). A dry run only asks what is new."""
    with db.transaction() as tx:
        if result.dry_run:
            known = {r["key"] for r in tx.all("reconcile_known_keys", keys=[d.key for d in found])}
            return [d for d in found if d.key not in known]
        new = [d for d in found
               if tx.one("reconcile_report", key=d.key, kind=d.finding, merchant_code=d.merchant_code,
                         transaction_code=d.transaction_code, order_number=d.order_number, amount=d.amount,
                         currency=d.currency, detail=d.detail, run_id=result.run_id) is not None]
        if new:
            outbox.queue(tx, settings, outbox.reconcile_alert(
                result.run_id, [as_dict(d) for d in new],
                [{"merchant_code": account.merchant_code, "label": account.label, "ok": account.ok,
                  "error": account.error}], settings))
        if cursor is not None:  # from the oldest payment not judged yet (still settling), with an overlap
            tx.run("reconcile_store_cursor", merchant_code=account.merchant_code, changes_since=cursor)
    return new


def as_dict(found: Discrepancy) -> dict[str, Any]:
    """A discrepancy as `--json` and the alert list it."""
    return {"key": found.key, "kind": found.finding, "order_number": found.order_number,
            "order_status": found.order_status, "transaction_code": found.transaction_code,
            "amount": found.amount, "currency": found.currency, "merchant_code": found.merchant_code,
            "sumup_status": found.sumup_status, "detail": found.detail}

"""`payverify reconcile`: every SumUp merchant account payverify can reach, its transaction history
against the orders (orders/reconcile.py judges). It changes no order: it reports, and alerts staff
once per discrepancy through the outbox.

Accounts: the platform API key's own (GET /v0.1/me) and every artist connected with OAuth, with the
token the sweep would use (Credentials: a 401 refreshes once and retries once). An account that
cannot be read is reported as such and the others carry on. The history is read page by page and
judged in chunks, so memory does not grow with it; the orders are looked up per chunk.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from payverify.config import Settings
from payverify.db import Database
from payverify.errors import DatabaseError, DatabaseUnavailable, PayverifyError
from payverify.mail import outbox
from payverify.orders import reconcile as judge
from payverify.orders.reconcile import Discrepancy, OrderRef, Totals
from payverify.secret import Secret
from payverify.sumup.checkout import checkout_from_dict
from payverify.sumup.client import Reply, SumUpClient, SumUpUnavailable
from payverify.sumup.credentials import Credentials, TokenOwner
from payverify.sumup.history import HistoryItem, HistoryUnreadable, merchant_code_of, parse_item, walk

log = structlog.get_logger("payverify.modes.reconcile")

FIRST_RUN_DAYS = 7  # how far back the first incremental run of an account looks
CURSOR_OVERLAP = timedelta(minutes=10)  # SumUp's clock and ours differ: re-read a little, keys de-duplicate
PAGE_LIMIT = "100"
CHUNK = 500  # history items judged per order lookup
OWNER_CANDIDATES = 3  # not-completed orders whose checkout is asked about an unexplained payment
PLATFORM = TokenOwner(artist_id=0, artist_name="the platform API key", oauth=False)


@dataclass
class Account:
    merchant_code: str | None
    label: str  # "platform API key" or the artist's name
    owner: TokenOwner
    ok: bool = True
    error: str | None = None
    transactions: int = 0
    since: datetime | None = None
    incremental: bool = False


@dataclass
class Reconciliation:
    run_id: str
    dry_run: bool
    since: datetime | None  # --since, else None (each account from its own cursor)
    accounts: list[Account] = field(default_factory=list)
    discrepancies: list[Discrepancy] = field(default_factory=list)
    new: list[Discrepancy] = field(default_factory=list)  # not reported by an earlier run
    totals: Totals | None = None

    @property
    def all_read(self) -> bool:
        return all(a.ok for a in self.accounts)


# One SumUp transaction and the order it matched (None), for the accountant's CSV.
RowSink = Callable[[str, HistoryItem, OrderRef | None], None]


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
    # Payments younger than the rescue window may still be settled by a sweep: judged on a later run.
    settling_since = started - timedelta(hours=settings.policy.rescue_hours)
    result.accounts = _accounts(settings, db, client, credentials)
    seen_merchants: set[str] = set()
    for account in result.accounts:
        if not account.ok or account.merchant_code is None or account.merchant_code in seen_merchants:
            continue
        seen_merchants.add(account.merchant_code)
        deadline = time.monotonic() + settings.time_budget_seconds  # each account its own budget
        try:
            _reconcile_account(db, client, credentials, account, result, started, settling_since, deadline,
                               row_sink)
        except (DatabaseError, DatabaseUnavailable):
            raise  # the run cannot go on (exit 4), not one account's trouble
        except (HistoryUnreadable, SumUpUnavailable) as exc:
            account.ok, account.error = False, _reason(exc)
        except (PayverifyError, ValueError) as exc:  # missing or refused credentials; an id SumUp cannot take
            account.ok, account.error = False, str(exc)
        if not account.ok:
            log.warning("reconcile.account_unreadable", merchant_code=account.merchant_code, error=account.error)
        elif not dry_run and since is None:
            # From the oldest payment not judged yet (still settling), with an overlap for the clocks.
            with db.transaction() as tx:
                tx.run("reconcile_store_cursor", merchant_code=account.merchant_code,
                       changes_since=settling_since - CURSOR_OVERLAP)
    # The same fact seen twice in a run (a page overlap, a transaction also asked for by its code): once.
    result.discrepancies = list({d.key: d for d in result.discrepancies}.values())
    if dry_run:  # what a real run would alert about, remembering nothing
        with db.transaction() as tx:
            known = {r["key"] for r in tx.all("reconcile_known_keys", keys=[d.key for d in result.discrepancies])}
        result.new = [d for d in result.discrepancies if d.key not in known]
    else:
        _record(settings, db, result)
    return result


def _reason(exc: Exception) -> str:
    return exc.reason if isinstance(exc, HistoryUnreadable) else str(exc)


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
        except (SumUpUnavailable, PayverifyError) as exc:
            platform.ok, platform.error = False, str(exc)
        accounts.append(platform)
    with db.transaction() as tx:
        artists = tx.all("reconcile_artist_accounts")
    for artist in artists:
        accounts.append(Account(merchant_code=artist["merchant_code"], label=artist["name"],
                                owner=TokenOwner(artist["id"], artist["name"], oauth=True)))
    return accounts


def _reconcile_account(db: Database, client: SumUpClient, credentials: Credentials, account: Account,
                       result: Reconciliation, started: datetime, settling_since: datetime, deadline: float,
                       row_sink: RowSink | None) -> None:
    code = account.merchant_code
    assert code is not None and result.totals is not None
    if result.since is not None:
        window: dict[str, str | list[str]] = {"oldest_time": result.since.isoformat()}
        account.since = result.since
    else:
        with db.transaction() as tx:
            cursor = tx.one("reconcile_cursor", merchant_code=code)
        account.since = cursor["changes_since"] if cursor else started - timedelta(days=FIRST_RUN_DAYS)
        account.incremental = True
        window = {"changes_since": account.since.isoformat()}
    params: dict[str, str | list[str]] = {"order": "ascending", "limit": PAGE_LIMIT, **window}

    def fetch(next_query: str | None) -> Reply:
        def request(token):
            return client.list_transactions(code, token, params=None if next_query else params, next_query=next_query)

        return credentials.call(account.owner, request, about=f"the transaction history of {code}").reply

    totals = result.totals
    seen: set[str] = set()  # the codes completed orders name that the window has: memory as the orders'
    for chunk in _chunks(walk(fetch, deadline=deadline), CHUNK):
        account.transactions += len(chunk)
        payments = [i for i in chunk if judge.is_ticket_payment(i) and i.transaction_code]
        named: dict[str, OrderRef] = {}
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
                result.discrepancies.extend(judge.judge_completed(item, order, code))
            elif judged and item.status == "SUCCESSFUL" and item.timestamp is not None \
                    and item.timestamp < settling_since:
                _in_budget(deadline, account)
                order = order or _owner(db, client, credentials, code, item)  # the CSV names it too
                result.discrepancies.append(judge.paid_without_order(item, code, order))
            if row_sink is not None:
                row_sink(code, item, order)
    with db.transaction() as tx:
        completed = [_order(o) for o in tx.all("reconcile_completed_since", since=account.since, merchant_code=code)]
    for order in completed:
        if not order.transaction_code:
            totals.order(order, on=order.paid_at)
            result.discrepancies.append(judge.completed_without_payment(order))
        elif order.transaction_code not in seen:
            # Paid before the window, completed in it (a late verification): ask for that payment itself.
            _in_budget(deadline, account)
            result.discrepancies.extend(_check_payment(client, credentials, account, order))


def _in_budget(deadline: float, account: Account) -> None:
    if time.monotonic() > deadline:
        raise HistoryUnreadable(f"time budget spent after {account.transactions} transactions")


def _chunks(items: Iterator[HistoryItem], size: int) -> Iterator[list[HistoryItem]]:
    while chunk := list(islice(items, size)):
        yield chunk


def _order(row: dict[str, Any]) -> OrderRef:
    return OrderRef(id=row["id"], order_number=row["order_number"], status=row["status"], total=row["total"],
                    currency=row["currency"], merchant_code=row["merchant_code"],
                    transaction_code=row["transaction_code"], paid_at=row["paid_at"])


def _owner(db: Database, client: SumUpClient, credentials: Credentials, code: str,
           item: HistoryItem) -> OrderRef | None:
    """The not-completed order whose checkout lists this payment, if one of the likely ones does."""
    if item.amount is None or item.currency is None or item.timestamp is None:
        return None
    with db.transaction() as tx:
        candidates = tx.all("reconcile_open_orders_near", amount=item.amount, currency=item.currency,
                            merchant_code=code, paid_at=item.timestamp, limit=OWNER_CANDIDATES)
    for row in candidates:
        owner = TokenOwner(row["artist_id"], row["artist_name"], row["artist_uses_oauth"])
        checkout_id: str = row["checkout_id"]

        def request(token: Secret, checkout_id: str = checkout_id) -> Reply:
            return client.get_checkout(checkout_id, token)

        try:
            reply = credentials.call(owner, request, about=f"checkout of order {row['order_number']}").reply
        except (SumUpUnavailable, PayverifyError, ValueError):
            continue  # the payment is reported all the same, without its order
        if reply.status != 200:
            continue
        try:
            checkout = checkout_from_dict(_json_object(reply.text))
        except (ValueError, TypeError):
            continue
        if any(t.transaction_code == item.transaction_code for t in checkout.transactions):
            return _order(row)
    return None


def _json_object(text: str) -> dict[str, Any]:
    body = json.loads(text, parse_float=Decimal)
    if not isinstance(body, dict):
        raise ValueError("not an object")
    return body


def _check_payment(client: SumUpClient, credentials: Credentials, account: Account,
                   order: OrderRef) -> list[Discrepancy]:
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


def _record(settings: Settings, db: Database, result: Reconciliation) -> None:
    """Remember what was reported, and queue one alert listing what is new."""
    with db.transaction() as tx:
        for found in result.discrepancies:
            if tx.one("reconcile_report", key=found.key, kind=found.kind, merchant_code=found.merchant_code,
                      transaction_code=found.transaction_code, order_number=found.order_number,
                      amount=found.amount, currency=found.currency, detail=found.detail,
                      run_id=result.run_id) is not None:
                result.new.append(found)
        if result.new:
            outbox.queue(tx, settings, outbox.reconcile_alert(
                result.run_id, [as_dict(d) for d in result.new],
                [{"merchant_code": a.merchant_code, "label": a.label, "ok": a.ok, "error": a.error}
                 for a in result.accounts], settings))


def as_dict(found: Discrepancy) -> dict[str, Any]:
    """A discrepancy as `--json` and the alert list it."""
    return {"key": found.key, "kind": found.kind, "order_number": found.order_number,
            "order_status": found.order_status, "transaction_code": found.transaction_code,
            "amount": found.amount, "currency": found.currency, "merchant_code": found.merchant_code,
            "sumup_status": found.sumup_status, "detail": found.detail}

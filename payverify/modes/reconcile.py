"""`payverify reconcile`: every SumUp merchant account payverify can reach, its transaction history
against the orders. It changes no order: it reports, and alerts staff once per discrepancy through
the outbox. This module is the run over the accounts; reconcile_account.py reads one account's
history, payment_owner.py finds whose order a payment is, orders/reconcile.py judges.

Accounts: the platform API key's own (GET /v0.1/me) and every artist connected with OAuth, with the
token the sweep would use (Credentials: a 401 refreshes once and retries once). An account that
cannot be read, for whatever reason, is reported as such and the others carry on. What an
account's reading found is recorded, and alerted, in the one transaction that moves its cursor: a
run killed anywhere has either recorded an account's findings and moved past them, or done
neither, and the next run reads that account again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from payverify import faults
from payverify.config import Settings
from payverify.db import Database
from payverify.errors import DatabaseUnavailable, PayverifyError
from payverify.mail import outbox
from payverify.modes.attempt import describe
from payverify.modes.reconcile_account import Account, RowSink, read_account
from payverify.orders.reconcile import Discrepancy, Totals
from payverify.sumup.client import SumUpClient, SumUpUnavailable
from payverify.sumup.credentials import Credentials, TokenOwner
from payverify.sumup.history import HistoryUnreadable, merchant_code_of

log = structlog.get_logger("payverify.modes.reconcile")

CURSOR_OVERLAP = timedelta(minutes=10)  # SumUp's clock and ours differ: re-read a little, keys de-duplicate
PLATFORM = TokenOwner(artist_id=0, artist_name="the platform API key", oauth=False)


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


def reconcile(settings: Settings, db: Database, client: SumUpClient, run_id: str, *, since: datetime | None = None,
              dry_run: bool = False, row_sink: RowSink | None = None) -> Reconciliation:
    def reconnect_alert(artist_id: int | None, artist_name: str, problem: str) -> None:
        if not dry_run:  # the same alert, de-duplicated the same way, as the sweep's
            with db.transaction() as tx:
                outbox.queue(tx, settings, outbox.reconnect_alert(artist_id, artist_name, problem, settings))

    credentials = Credentials(settings, client, db, on_auth_problem=reconnect_alert)
    totals = Totals(zone=ZoneInfo(settings.timezone))
    result = Reconciliation(run_id=run_id, dry_run=dry_run, since=since, totals=totals)
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
            read_account(db, client, credentials, account, since=since, totals=totals, found=found,
                         started=started, settling_since=settling_since, deadline=deadline, row_sink=row_sink)
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

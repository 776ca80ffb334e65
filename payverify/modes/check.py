"""`payverify check ORDER`: one order through the same verify path as a sweep."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from payverify.config import Settings
from payverify.db import Database
from payverify.errors import OrderNotFound
from payverify.mail.kinds import CONFIRMATION
from payverify.orders.settle import Attempt
from payverify.orders.verify import Result, Verifier
from payverify.sumup.client import SumUpClient


@dataclass(frozen=True)
class CheckResult:
    result: Result
    audit: list[dict[str, Any]]
    outbox: list[dict[str, Any]]

    @property
    def answer(self):
        return self.result.answer

    @property
    def timed_confirmation(self) -> dict[str, Any] | None:
        """The order's confirmation as its settle queued it, once sent, with its time to ticket (None:
        not sent yet, or no start known; a resend has none)."""
        return next((m for m in self.outbox if m["kind"] == CONFIRMATION and m["status"] == "sent"
                     and m["time_to_ticket_seconds"] is not None), None)


def resolve_order(db: Database, ref: str) -> int:
    """An order number, or a numeric id when no order has that number."""
    with db.transaction() as tx:
        row = tx.one("find_order_id_by_number", order_number=ref)
        if row is None and ref.isdigit() and int(ref) < 2**63:
            row = tx.one("find_order_id_by_id", order_id=int(ref))
    if row is None:
        raise OrderNotFound(f"no order with number or id {ref!r}")
    return row["id"]


def check_order(settings: Settings, db: Database, client: SumUpClient, attempt: Attempt, ref: str, *,
                dry_run: bool = False) -> CheckResult:
    order_id = resolve_order(db, ref)
    result = Verifier(settings, db, client, attempt, dry_run=dry_run).verify(order_id)
    with db.transaction() as tx:
        audit = tx.all("recent_audit", order_id=order_id, limit=10)
    return mail_state(db, CheckResult(result=result, audit=audit, outbox=[]))


def mail_state(db: Database, check: CheckResult) -> CheckResult:
    """The order's mail as it stands now (after any delivery)."""
    with db.transaction() as tx:
        mail = tx.all("order_outbox", order_id=check.result.order.id)
    return replace(check, outbox=mail)

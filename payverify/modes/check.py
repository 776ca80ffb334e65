"""`payverify check ORDER`: one order through the same verify path as a sweep, then its mail."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from payverify.db import Database
from payverify.errors import OrderNotFound
from payverify.mail.kinds import CONFIRMATION
from payverify.mail.rows import OutboxRow
from payverify.mail.sender import INTERACTIVE_MAIL_SECONDS, deliver
from payverify.modes.runtime import Runtime
from payverify.orders.audit import AuditRow
from payverify.orders.verify import Result, Verifier


@dataclass(frozen=True)
class CheckResult:
    result: Result
    audit: list[AuditRow]
    outbox: list[OutboxRow]

    @property
    def answer(self):
        return self.result.answer

    @property
    def timed_confirmation(self) -> OutboxRow | None:
        """The order's confirmation as its settle queued it, once sent, with its time to ticket (None:
        not sent yet, or no start known; a resend has none)."""
        return next((m for m in self.outbox if m.kind == CONFIRMATION and m.status == "sent"
                     and m.time_to_ticket_seconds is not None), None)


def resolve_order(db: Database, ref: str) -> int:
    """An order number, or a numeric id when no order has that number."""
    with db.transaction() as tx:
        row = tx.one("find_order_id_by_number", order_number=ref)
        if row is None and ref.isdigit() and int(ref) < 2**63:
            row = tx.one("find_order_id_by_id", order_id=int(ref))
    if row is None:
        raise OrderNotFound(f"no order with number or id {ref!r}")
    return row["id"]


def check_order(rt: Runtime, ref: str, *, dry_run: bool = False) -> CheckResult:
    """Verify the order as a sweep would; then, unless a dry run, send its mail within
    INTERACTIVE_MAIL_SECONDS (the rest is the sweep's). Its latest attempts and its mail as they
    stand afterwards."""
    with rt.database() as db, contextlib.nullcontext() if dry_run else rt.presence("check"):
        client = rt.sumup_client()
        try:
            order_id = resolve_order(db, ref)
            result = Verifier(rt.settings, db, client, rt.attempt("check"), dry_run=dry_run).verify(order_id)
        finally:
            client.close()
        if not dry_run:
            deliver(rt.settings, db, order_id=order_id, deadline=time.monotonic() + INTERACTIVE_MAIL_SECONDS,
                    owner=rt.lease_owner)
        with db.transaction() as tx:
            audit = [AuditRow.from_row(r) for r in tx.all("recent_audit", order_id=order_id, limit=10)]
            outbox = [OutboxRow.from_row(r) for r in tx.all("order_outbox", order_id=order_id)]
    return CheckResult(result=result, audit=audit, outbox=outbox)

"""`payverify check ORDER`: one order through the attempt path of a sweep (its lease included), then its mail."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from payverify.config import Settings
from payverify.db import Database
from payverify.errors import OrderBusy, OrderNotFound, OrderNotVerified
from payverify.mail.kinds import CONFIRMATION
from payverify.mail.rows import OutboxRow
from payverify.mail.sender import INTERACTIVE_MAIL_SECONDS, deliver
from payverify.modes.attempt import CLAIMED, OrderFailure, Worker, Workers, attempt_order
from payverify.modes.runtime import Runtime
from payverify.orders.audit import AuditRow
from payverify.orders.settle import Attempt
from payverify.orders.verify import Result, Verifier

# Another run's attempt at an order takes a second or so; one holding it longer is slow or stuck, and
# on-call is better told so than kept waiting.
CLAIM_WAIT_SECONDS = 10.0
CLAIM_POLL_SECONDS = 0.25


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


def check_order(rt: Runtime, ref: str, *, dry_run: bool = False,
                waiting: Callable[[str], None] = lambda line: None) -> CheckResult:
    """Attempt the order as a sweep would (modes/attempt.py: its lease, then verify, or the error
    recorded); then, unless a dry run, send its mail within INTERACTIVE_MAIL_SECONDS (the rest is the
    sweep's). Its latest attempts and its mail as they stand afterwards. While another run holds the
    order it waits up to CLAIM_WAIT_SECONDS, telling `waiting` once."""
    with rt.database() as db, contextlib.nullcontext() if dry_run else rt.presence("check") as presence:
        order_id = resolve_order(db, ref)
        attempt = rt.attempt("check")
        client = rt.sumup_client()
        workers = Workers(lambda: Worker(db, client, Verifier(rt.settings, db, client, attempt, dry_run=dry_run)))
        try:
            # The holder may be a process of this machine that just died: its claim is free once that is seen.
            held = (lambda: None) if presence is None else (lambda: presence.forget_the_dead(db))
            outcome = _attempt(workers, rt.settings, attempt, order_id, ref, dry_run=dry_run, waiting=waiting,
                               held=held)
        finally:
            client.close()
        if not dry_run:
            deliver(rt.settings, db, order_id=order_id, deadline=time.monotonic() + INTERACTIVE_MAIL_SECONDS,
                    owner=rt.lease_owner)
        with db.transaction() as tx:
            audit = [AuditRow.from_row(r) for r in tx.all("recent_audit", order_id=order_id, limit=10)]
            outbox = [OutboxRow.from_row(r) for r in tx.all("order_outbox", order_id=order_id)]
    return CheckResult(result=outcome, audit=audit, outbox=outbox)


def _attempt(workers: Workers, settings: Settings, attempt: Attempt, order_id: int, ref: str, *, dry_run: bool,
             waiting: Callable[[str], None], held: Callable[[], None]) -> Result:
    """The attempt's result; again every CLAIM_POLL_SECONDS while another live run holds the order."""
    give_up = time.monotonic() + CLAIM_WAIT_SECONDS
    told = False
    while True:
        ending, outcome = attempt_order(workers, settings, attempt, order_id, dry_run=dry_run, console=False)
        if isinstance(outcome, Result):
            return outcome
        if isinstance(outcome, OrderFailure):
            raise OrderNotVerified(f"order {outcome.order_number or ref} (id {order_id}) could not be verified: "
                                   f"{outcome.error}", exit_status=outcome.exit_status)
        assert ending == CLAIMED
        if time.monotonic() >= give_up:
            raise OrderBusy(f"order {ref} is being verified by another run right now; "
                            "run `payverify check` again in a minute")
        if not told:
            waiting(f"order {ref} is being verified by another run; waiting for it (at most {CLAIM_WAIT_SECONDS:g} s)")
            told = True
        time.sleep(CLAIM_POLL_SECONDS)
        held()

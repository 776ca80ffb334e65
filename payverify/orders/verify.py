"""Verify one order end to end: read it, ask SumUp (no transaction open), decide, settle.

Used by every path: `sweep`, `check` and replays (`sweep --since`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import structlog

from payverify import faults
from payverify.config import Policy, Settings
from payverify.db import Database
from payverify.errors import (
    OrderNotFound,
    SumUpUnavailable,
    TokenRefreshFailed,
    UniqueViolation,
)
from payverify.mail import outbox
from payverify.models import REQUIRES_MANUAL_REVIEW, Order, OrderItem
from payverify.orders.decision import ALERT_REVIEW, Decision, decide
from payverify.orders.settle import Attempt, Settled, settle
from payverify.sumup.answer import CREDENTIALS, NOT_UNDERSTOOD, Answer, answer_from_reply
from payverify.sumup.checkout import plausible_checkout_id
from payverify.sumup.client import SumUpClient
from payverify.sumup.credentials import (
    ArtistDisconnected,
    Credentials,
    MissingCredentials,
    RunMemory,
    TokenOwner,
)

log = structlog.get_logger("payverify.orders.verify")


@dataclass(frozen=True, kw_only=True)
class Result:
    order: Order
    items: list[OrderItem]
    answer: Answer
    decision: Decision
    settled: Settled | None  # None on a dry run: nothing was written
    duration_ms: int

    @property
    def outcome(self) -> str:
        return self.settled.outcome if self.settled else self.decision.outcome


class Verifier:
    def __init__(self, settings: Settings, db: Database, client: SumUpClient, attempt: Attempt, *,
                 policy: Policy | None = None, dry_run: bool = False, memory: RunMemory | None = None) -> None:
        self.settings = settings
        self.db = db
        self.client = client
        self.attempt = attempt
        self.policy = policy or settings.policy
        self.dry_run = dry_run
        self.credentials = Credentials(settings, client, db, on_auth_problem=self._queue_reconnect_alert,
                                       memory=memory)

    def load(self, order_id: int) -> tuple[Order, list[OrderItem]]:
        with self.db.transaction() as tx:
            row = tx.one("load_order", order_id=order_id)
            if row is None:
                raise OrderNotFound(f"order {order_id} does not exist")
            items = [OrderItem.from_row(r) for r in tx.all("load_order_items", order_id=order_id)]
        return Order.from_row(row), items

    def ask(self, order: Order) -> Answer:
        """SumUp's answer about the order's checkout. Never raises for SumUp or token trouble."""
        if not order.sumup_checkout_id:
            return Answer.unknown("not asked: the order has no SumUp checkout", failure=None)
        if not plausible_checkout_id(order.sumup_checkout_id):
            return Answer.unknown(f"not asked: checkout id {order.sumup_checkout_id!r} is not a plausible "
                                  f"SumUp checkout id", failure=NOT_UNDERSTOOD)
        checkout_id, owner = order.sumup_checkout_id, TokenOwner.of(order)
        try:
            reply = self.credentials.call(owner, lambda token: self.client.get_checkout(checkout_id, token),
                                          about=f"checkout {checkout_id}").reply
            if reply.status in (200, 404) and self.credentials.worked(owner):
                self._rearm_reconnect_alert(owner)
            return answer_from_reply(reply.status, reply.text)
        except SumUpUnavailable as exc:
            return Answer.unavailable(exc)
        except (ArtistDisconnected, MissingCredentials, TokenRefreshFailed) as exc:
            return Answer.unknown(str(exc), failure=CREDENTIALS)

    def now(self) -> datetime:
        """The database's clock, so every host decides on the same time."""
        with self.db.transaction() as tx:
            return tx.require_one("now")["now"]

    def verify(self, order_id: int) -> Result:
        started = time.monotonic()
        order, items = self.load(order_id)
        answer = self.ask(order)
        faults.point("after_sumup_answer")
        duration_ms = int((time.monotonic() - started) * 1000)
        if self.dry_run:
            decision = decide(order, items, answer, self.now(), self.policy)
            result = Result(order=order, items=items, answer=answer, decision=decision, settled=None,
                            duration_ms=duration_ms)
        else:
            result = self._settle(order, items, answer, duration_ms)
            faults.point("after_settle_commit")
        self._log(result)
        return result

    def _settle(self, order: Order, items: list[OrderItem], answer: Answer, duration_ms: int) -> Result:
        try:
            with self.db.transaction() as tx:
                now = tx.require_one("now")["now"]
                decision = decide(order, items, answer, now, self.policy)
                settled = settle(tx, self.settings, self.attempt, order, items, decision, answer, duration_ms,
                                 now=now)
        except UniqueViolation:
            # The fulfilment row exists: tickets were issued before and the order was set back since.
            # Nothing of the attempt is kept; a person must look (else it would loop every run).
            decision = Decision(new_status=REQUIRES_MANUAL_REVIEW, notify=(ALERT_REVIEW,),
                                reason=f"SumUp says PAID but tickets for this order were already issued; "
                                       f"the order was set back to {order.status} after fulfilment")
            with self.db.transaction() as tx:
                settled = settle(tx, self.settings, self.attempt, order, items, decision, answer, duration_ms,
                                 now=tx.require_one("now")["now"])
        return Result(order=order, items=items, answer=answer, decision=decision, settled=settled,
                      duration_ms=duration_ms)

    def _queue_reconnect_alert(self, artist_id: int | None, artist_name: str, problem: str) -> None:
        if self.dry_run:
            return
        with self.db.transaction() as tx:
            outbox.queue(tx, self.settings, outbox.reconnect_alert(artist_id, artist_name, problem, self.settings))

    def _rearm_reconnect_alert(self, owner: TokenOwner) -> None:
        """Credentials work again: the next time they fail, staff hear about it again."""
        if self.dry_run:
            return
        with self.db.transaction() as tx:
            tx.run("rearm_alert", dedup_key=outbox.reconnect_key(owner.key))

    def _log(self, result: Result) -> None:
        order = result.order
        log.info("order.verified", run_id=self.attempt.run_id, command=self.attempt.command,
                 order_id=order.id, order_number=order.order_number, checkout_id=order.sumup_checkout_id,
                 status_before=order.status, outcome=result.outcome, reason=result.decision.reason,
                 http_status=result.answer.http_status, sumup_status=result.answer.sumup_status,
                 tickets=result.settled.tickets_issued if result.settled else 0,
                 dry_run=self.dry_run, duration_ms=result.duration_ms)

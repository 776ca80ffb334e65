"""Queueing mail and alerts in payverify_outbox, inside the caller's transaction.

Rows are written in the same transaction as the outcome that calls for them, so a settled order
never lacks its mail and a rolled-back settle never leaves one. Sending is a separate step.
Alerts are de-duplicated by key: one per order per kind, one per artist for a revoked connection, one
per error streak of an order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from email.utils import make_msgid
from typing import Any

from payverify.config import Settings
from payverify.db import Tx
from payverify.mail.kinds import ALERT_ORDER_ERROR, ALERT_RECONCILE, ALERT_RECONNECT, REGISTRY

# Erroring attempts in a row before staff hear of it: one is noise (a restart, a lock timeout), three
# is a quarter of an hour of cron runs and a pattern.
ORDER_ERROR_ALERT_RUNS = 3


@dataclass(frozen=True)
class OutboxMessage:
    kind: str
    dedup_key: str | None
    order_id: int | None
    recipients: tuple[str, ...]
    context: dict[str, Any]
    ticket_clock_started_at: datetime | None = None  # an order confirmation's time to ticket starts here


def _json_default(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in an outbox context")


def _mail_domain(settings: Settings) -> str:
    sender = settings.mail_from or ""
    domain = sender.rpartition("@")[2].strip(" >")
    return domain or "payverify.invalid"


def queue(tx: Tx, settings: Settings, message: OutboxMessage) -> int | None:
    """Insert one outbox row; its id, or None when its dedup key was already queued."""
    row = tx.one(
        "insert_outbox", kind=message.kind, dedup_key=message.dedup_key, order_id=message.order_id,
        recipients=list(message.recipients),
        context=json.dumps(message.context, default=_json_default, sort_keys=True),
        message_id=make_msgid(idstring=message.kind.replace("_", "-"), domain=_mail_domain(settings)),
        ticket_clock_started_at=message.ticket_clock_started_at)
    return row["id"] if row is not None else None


def reconnect_key(artist_id: int | None) -> str:
    mail_type = REGISTRY[ALERT_RECONNECT]
    return mail_type.key(artist_id) if artist_id is not None else f"{mail_type.name}:platform"


def reconnect_alert(artist_id: int | None, artist_name: str, problem: str, settings: Settings) -> OutboxMessage:
    """SumUp refused an artist's credentials (or the platform key, artist_id None): one alert until
    they work again (verify.py re-arms the key on the first accepted request)."""
    return OutboxMessage(kind=ALERT_RECONNECT, dedup_key=reconnect_key(artist_id),
                         order_id=None, recipients=settings.alert_recipients,
                         context={"artist": {"id": artist_id, "name": artist_name}, "problem": problem})


def reconcile_alert(run_id: str, discrepancies: list[dict[str, Any]], accounts: list[dict[str, Any]],
                    settings: Settings) -> OutboxMessage:
    """New discrepancies (each as `payverify reconcile --json` lists it) of the accounts a reconciliation
    run recorded them for: one digest per run and account that found something new, queued in the
    transaction that records them and moves that account's cursor."""
    which = "+".join(str(a.get("merchant_code") or a.get("label")) for a in accounts)
    return OutboxMessage(kind=ALERT_RECONCILE, dedup_key=f"{ALERT_RECONCILE}:run:{run_id}:{which}", order_id=None,
                         recipients=settings.alert_recipients,
                         context={"discrepancies": discrepancies, "accounts": accounts})


def order_error_key(order_id: int) -> str:
    return REGISTRY[ALERT_ORDER_ERROR].key(order_id)


def order_error_alert(order_id: int, order_number: str | None, error: str, since: datetime, runs: int,
                      settings: Settings) -> OutboxMessage:
    """An order's verification errored `runs` times in a row since `since`: one alert until it is
    verified again (settle.record re-arms the key). `error` is already safe and one line."""
    return OutboxMessage(kind=ALERT_ORDER_ERROR, dedup_key=order_error_key(order_id), order_id=order_id,
                         recipients=settings.alert_recipients,
                         context={"order_id": order_id, "order_number": order_number, "error": error,
                                  "since": since, "runs": runs})

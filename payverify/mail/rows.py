"""payverify_outbox rows as payverify reads them back: one frozen type per query, with exactly the
columns it returns, so a misspelt column is mypy's error rather than a KeyError in a run.

Nothing here imports the database driver: an OutgoingRow goes to the compose workers (mail/compose_pool.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class OutboxRow:
    """One of an order's messages (query `order_outbox`), its columns in the query's order: `check
    --json` prints them so."""

    kind: str
    recipients: tuple[str, ...]
    status: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None
    ticket_clock_started_at: datetime | None
    time_to_ticket_seconds: float | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> OutboxRow:
        return cls(**{**row, "recipients": tuple(row["recipients"])})


@dataclass(frozen=True)
class OutgoingRow:
    """A message a sender claimed (query `claim_outbox_row`): what composing and sending it need."""

    id: int
    kind: str
    order_id: int | None
    recipients: tuple[str, ...]
    context: dict[str, Any]
    message_id: str
    attempts: int
    created_at: datetime
    too_old: bool  # older than the sender's give-up hours

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> OutgoingRow:
        return cls(**{**row, "recipients": tuple(row["recipients"])})

"""`payverify pending`: the orders awaiting verification or a person, with what payverify last saw of each."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from payverify.config import Settings
from payverify.db import Database


@dataclass(frozen=True)
class PendingRow:
    """One row of query `pending_orders`, its columns in the query's order (`pending --json` prints them so)."""

    id: int
    order_number: str
    status: str
    created_at: datetime
    updated_at: datetime
    age_seconds: int
    artist_name: str
    last_checked_at: datetime | None
    checks: int
    last_http_status: int | None
    last_sumup_status: str | None
    last_outcome: str | None
    last_reason: str | None
    consecutive_errors: int
    first_error_at: datetime | None
    last_error: str | None
    mail_queued: int
    mail_failed: int

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> PendingRow:
        return cls(**row)


def pending_orders(settings: Settings, db: Database, *, stuck: bool, limit: int) -> list[PendingRow]:
    """Oldest first, at most `limit`; `stuck`: only those in pending_verification for longer than
    PAYVERIFY_STUCK_MINUTES. Failed/expired orders in the rescue window are listed while they error."""
    with db.transaction() as tx:
        rows = tx.all("pending_orders", stuck=stuck, stuck_minutes=settings.policy.stuck_minutes,
                      rescue_hours=settings.policy.rescue_hours, limit=limit)
    return [PendingRow.from_row(row) for row in rows]

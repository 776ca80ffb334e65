"""payverify_audit rows as `check` reads them back (settle.py writes them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class AuditRow:
    """One verification attempt (query `recent_audit`), its columns in the query's order: `check
    --json` prints them so."""

    run_id: str
    host: str
    command: str
    checkout_id: str | None
    http_status: int | None
    sumup_status: str | None
    outcome: str
    reason: str
    duration_ms: int
    created_at: datetime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> AuditRow:
        return cls(**row)

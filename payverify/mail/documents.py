"""What the ticket attachments (PDF and .ics) are made from: small, immutable, database-free."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, kw_only=True)
class EventInfo:
    """The event as printed on tickets; starts_at/ends_at must be timezone-aware."""

    id: int
    title: str
    venue: str
    starts_at: datetime
    ends_at: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("starts_at", "ends_at"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise ValueError(f"EventInfo.{name} must be a timezone-aware datetime")


@dataclass(frozen=True, kw_only=True)
class TicketInfo:
    """One admission: its door code, ticket type name and holder's name."""

    code: str
    ticket_type: str
    holder_name: str

"""Frozen row models read from the site's tables. Money is Decimal; times are timezone-aware."""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Self

# Statuses the web site uses (orders_order.status is a plain varchar: others may appear).
PENDING = "pending"
PENDING_VERIFICATION = "pending_verification"
COMPLETED = "completed"
FAILED = "failed"
EXPIRED = "expired"
REQUIRES_MANUAL_REVIEW = "requires_manual_review"

AWAITING_PAYMENT = frozenset({PENDING, PENDING_VERIFICATION})
RESCUABLE = frozenset({FAILED, EXPIRED})


class _FromRow:
    # Every subclass is a dataclass: this tells the type checker so (`fields` wants one).
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Self:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


@dataclass(frozen=True, kw_only=True)
class Order(_FromRow):
    """An order as payverify saw it, with what the decision needs of its event and artist."""

    id: int
    order_number: str
    status: str
    email: str
    first_name: str
    last_name: str
    total: Decimal
    currency: str
    sumup_checkout_id: str | None
    created_at: datetime
    updated_at: datetime  # the site sets it when the order enters pending_verification (Django's auto_now)
    event_id: int
    event_title: str
    event_venue: str
    event_starts_at: datetime
    event_ends_at: datetime | None
    artist_id: int
    artist_name: str
    artist_merchant_code: str | None
    artist_uses_oauth: bool
    read_at: datetime | None = None  # when payverify read the order (the database's clock)

    @property
    def holder_name(self) -> str:
        return " ".join(part for part in (self.first_name.strip(), self.last_name.strip()) if part)[:200]

    @property
    def event_end(self) -> datetime:
        """When the event is over: its end, or its start when no end is recorded."""
        return self.event_ends_at or self.event_starts_at


@dataclass(frozen=True, kw_only=True)
class OrderItem(_FromRow):
    id: int
    ticket_type_id: int
    ticket_type_name: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True, kw_only=True)
class ArtistTokens(_FromRow):
    """An artist's OAuth state, read under the artist's row lock. The tokens stay out of its repr
    (a traceback's locals, a debug line): they are the artist's SumUp account."""

    id: int
    name: str
    sumup_access_token: str | None = field(repr=False)
    sumup_refresh_token: str | None = field(repr=False)
    sumup_token_expires_at: datetime | None

"""Seed the site's tables (and the SumUp simulator) with artists, events and orders.

For tests, the demo and benchmarks: never for a production database.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from importlib import resources

from payverify.db import Database
from payverify.db.queries import parse_queries
from payverify_dev.sumup_server import FakeSumUp, checkout_body

PLATFORM_KEY = "sup_sk_platform_test_key"
PLATFORM_MERCHANT = "MPLATFORM1"


@cache
def _queries() -> dict[str, str]:
    return parse_queries(resources.files("payverify_dev").joinpath("seed.sql").read_text("utf-8"))


def outside_transaction(db: Database, *statements: str) -> None:
    """Run statements that cannot run in a transaction (VACUUM, CREATE INDEX CONCURRENTLY) on the
    connection itself, without Database's statement timeout; Database only opens transactions."""
    conn = db._conn
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = 0")
            for statement in statements:
                cur.execute(statement)
            cur.execute("RESET statement_timeout")
    finally:
        conn.autocommit = False


def load_site_schema(db: Database) -> None:
    """Create the site's tables from the project's copy of site-schema.sql."""
    sql = resources.files("payverify_dev").joinpath("site_schema.sql").read_text("utf-8")
    with db.transaction() as tx:
        tx.script(sql)


@dataclass(frozen=True)
class SeededOrder:
    id: int
    order_number: str
    checkout_id: str | None
    total: Decimal
    currency: str
    admissions: int
    merchant_code: str


@dataclass(frozen=True)
class SeededArtist:
    id: int
    merchant_code: str
    access_token: str | None
    refresh_token: str | None


class Seeder:
    def __init__(self, db: Database, sumup: FakeSumUp | None = None) -> None:
        self.db = db
        self.sumup = sumup
        if sumup is not None:
            sumup.add_api_key(PLATFORM_KEY, PLATFORM_MERCHANT)
        self._merchants: dict[int, str] = {}
        self._events: dict[int, int] = {}

    def _one(self, query: str, /, **params) -> dict:
        with self.db.transaction(_queries()) as tx:
            return tx.one(query, **params)

    def artist(self, name: str = "Lua Verde", *, oauth: bool = False, merchant_code: str | None = None,
               token_expires_in: timedelta | None = timedelta(hours=1), with_refresh_token: bool = True,
               register_access_token: bool = True) -> SeededArtist:
        """An artist; with `oauth`, tokens in the site's row (and known to the simulator)."""
        merchant = merchant_code or (f"M{secrets.token_hex(4).upper()}" if oauth else PLATFORM_MERCHANT)
        access = refresh = expires_at = None
        if oauth:
            access = f"at_{secrets.token_urlsafe(16)}"
            refresh = f"rt_{secrets.token_urlsafe(16)}" if with_refresh_token else None
            expires_at = datetime.now(UTC) + token_expires_in if token_expires_in is not None else None
            if self.sumup is not None:
                if register_access_token:
                    self.sumup.add_access_token(access, merchant)
                if refresh:
                    self.sumup.add_refresh_token(refresh, merchant)
        row = self._one("insert_artist", name=name, email=f"{uuid.uuid4().hex[:8]}@artists.example",
                        merchant_code=merchant, access_token=access, refresh_token=refresh, expires_at=expires_at)
        self._merchants[row["id"]] = merchant
        return SeededArtist(row["id"], merchant, access, refresh)

    def event(self, artist: SeededArtist, title: str = "Harbour Lights", *, venue: str = "Fort Regent",
              starts_in: timedelta = timedelta(days=30), duration: timedelta | None = timedelta(hours=3)) -> int:
        starts = datetime.now(UTC) + starts_in
        row = self._one("insert_event", artist_id=artist.id, title=title, venue=venue, starts_at=starts,
                        ends_at=starts + duration if duration is not None else None)
        self._events[row["id"]] = artist.id
        return row["id"]

    def ticket_type(self, event_id: int, name: str = "Standing", price: Decimal | str = "12.50") -> int:
        return self._one("insert_ticket_type", event_id=event_id, name=name, price=Decimal(price))["id"]

    def order(self, ticket_types: list[tuple[int, int]], *, event_id: int, status: str = "pending_verification",
              age: timedelta = timedelta(minutes=5), sumup_status: str | None = "PAID",
              email: str = "fan@example.com", first_name: str = "Alex", last_name: str = "Morgan",
              currency: str = "GBP", order_number: str | None = None, checkout_id: str | None = "auto",
              sumup_amount: Decimal | str | None = None, checkout_overrides: dict | None = None) -> SeededOrder:
        """An order of (ticket_type_id, quantity) items; `sumup_status` None: no checkout at SumUp."""
        number = order_number or f"JE-{secrets.token_hex(4).upper()}"
        cid = str(uuid.uuid4()) if checkout_id == "auto" else checkout_id
        lines = [(tt, qty, self._one("ticket_type_price", id=tt)["price"]) for tt, qty in ticket_types]
        total = sum((price * qty for _, qty, price in lines), Decimal("0.00"))
        with self.db.transaction(_queries()) as tx:
            order_id = tx.one("insert_order", order_number=number, event_id=event_id, email=email,
                              first_name=first_name, last_name=last_name, total=total, currency=currency,
                              status=status, checkout_id=cid, age_seconds=age.total_seconds())["id"]
            for tt, qty, price in lines:
                tx.run("insert_order_item", order_id=order_id, ticket_type_id=tt, quantity=qty, unit_price=price)
        merchant = self._merchants.get(self._events.get(event_id, -1), PLATFORM_MERCHANT)
        if self.sumup is not None and cid and sumup_status:
            amount = Decimal(sumup_amount) if sumup_amount is not None else total
            body = checkout_body(cid, number, amount, currency, merchant, sumup_status)
            body.update(checkout_overrides or {})
            self.sumup.add_checkout(body, owner=merchant)
        return SeededOrder(order_id, number, cid, total, currency, sum(q for _, q in ticket_types), merchant)

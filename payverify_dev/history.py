"""Years of a site's history in a database, fast: for the scale benchmark and its test, never production.

`build_history` fills a database that holds the site's tables (possibly with rows already) and
payverify's schema with

- a catalogue: 30 artists (every fifth on its own SumUp account through OAuth, the rest on the
  platform's key), 600 events spread over the years and a few months beyond, two ticket types each;
- `orders` historical orders over `years` (ids in creation order), with the status mix of
  STATUS_MIX, one or two items each, and tickets for the paid ones (about 1.5 per order);
- payverify's own tables as after long use with nothing pruned (retention's hourly pass is recorded
  as just run): `payverify_rows` rows in each of payverify_audit (the newest attempts on the newest
  orders, when they happened), payverify_outbox (those orders' mail: sent, a few bounced or
  cancelled) and payverify_runs (a sweep every five minutes up to now), and for the newest
  `payverify_rows` orders (every order, when there are fewer) payverify_order_state and, when paid,
  payverify_fulfilment; a little reconciliation state;
- `due` orders a sweep must settle: pending_verification, a few minutes old, PAID at the simulator.

Everything historical is a few `INSERT ... SELECT ... FROM generate_series(...)` statements in one
transaction (history.sql), the site's indexes as they are; then VACUUM (ANALYZE). The history ends
HISTORY_ENDS before now, older than the rescue window, so no historical order is due: a sweep on it has
exactly the `due` orders to do. Only those go through Python (the Seeder), since the simulator must
know their checkouts.
"""

from __future__ import annotations

import secrets
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from itertools import accumulate
from typing import Any

from payverify.db import Database
from payverify.db.indexes import site_indexes
from payverify.db.queries import parse_queries
from payverify_dev.seed import PLATFORM_MERCHANT, SeededOrder, Seeder, outside_transaction
from payverify_dev.sumup_server import FakeSumUp

# The share of each status among historical orders (the first must be completed: the late payments
# and the tickets are drawn among those).
STATUS_MIX = (("completed", 0.85), ("failed", 0.06), ("expired", 0.05), ("cancelled", 0.02), ("refunded", 0.02))
EVENTS = 600
OAUTH_EVERY = 5
# The newest historical order is this old: past the 24 h rescue window, so no sweep looks at it again.
HISTORY_ENDS = timedelta(days=2)
UPCOMING = timedelta(days=140)  # events go on this long after the history ends (the due orders' among them)
ALERT_EMAIL = "alerts@coderra.je"  # PAYVERIFY_ALERT_EMAIL's default
RECONCILE_REPORTED = 25

ARTIST_NAMES = (
    "Lua Verde", "The Gorey Tide", "Harbour Static", "Mont Orgueil", "Saint Aubin Strings", "Elizabeth Castle",
    "Noirmont Point", "La Rocque", "Grève de Lecq", "The Minquiers", "Corbière Light", "Les Écréhous",
    "Rozel Bay", "Bonne Nuit", "Plémont", "Sorel Point", "Bouley Bay", "Anne Port", "Green Island",
    "Portelet", "Ouaisné", "Archirondel", "Havre des Pas", "Le Hocq", "Seymour Tower", "Icho Tower",
    "La Hougue Bie", "Devil's Hole", "Grosnez", "Les Landes",
)
TITLES = ("Harbour Lights", "Spring Tour", "Live at the Fort", "Summer Nights", "Unplugged", "Winter Session",
          "Album Launch", "Farewell Show", "Acoustic Evening", "Festival Warm-up")
VENUES = ("Fort Regent", "Jersey Opera House", "Jersey Arts Centre", "Howard Davis Park", "The Watersplash",
          "Royal Square")
FIRST_NAMES = ("Alex", "Sam", "Jo", "Charlie", "Morgan", "Robin", "Kim", "Lee", "Noor", "Ana", "Luca", "Mia",
               "Tom", "Zoe", "Ravi", "Ines", "Owen", "Sara", "Finn", "Maya", "Theo", "Lena", "Hugo")
LAST_NAMES = ("Morgan", "Le Brun", "Renouf", "de Gruchy", "Vibert", "Le Sueur", "Pallot", "Amy", "Bisson",
              "Falle", "Huelin", "Le Cornu", "Mauger", "Noel", "Perchard", "Querée", "Romeril", "Syvret", "Le Feuvre")


@cache
def _queries() -> dict[str, str]:
    return parse_queries(resources.files("payverify_dev").joinpath("history.sql").read_text("utf-8"))


@dataclass(frozen=True)
class History:
    orders: int
    payverify_rows: int
    due: tuple[SeededOrder, ...]
    seconds: float  # building it all, the due orders and VACUUM included


def build_history(db: Database, *, orders: int, payverify_rows: int, due: int = 0, sumup: FakeSumUp | None = None,
                  years: int = 3, host: str | None = None, seed: float = 0.42) -> History:
    """Fill `db` (see the module's docstring), whose payverify tables are empty (a second history would
    give its runs the ids of the same five-minute slots). `sumup`: the simulator the due orders'
    checkouts go to (needed when `due`); `host`: the host payverify's runs and audit rows name (default:
    this one, as a payverify run here records itself); `seed`: the same draws for the same seed."""
    if min(orders, payverify_rows, due) < 0:
        raise ValueError("orders, payverify_rows and due cannot be negative")
    if due and sumup is None:
        raise ValueError("due orders need the simulator their checkouts are registered with")
    started = time.monotonic()
    with db.transaction(_queries()) as tx:
        tx.one("loosen")
        tx.all("skip_triggers")
        tx.fetch_sql("SELECT setseed(%(seed)s)", {"seed": seed})
        params = _params(tx.require_one("clock")["now"], tx.require_one("id_bases"), orders=orders,
                         rows=payverify_rows, years=years, host=host or socket.gethostname())
        tx.run("run_id_function")
        for statement in ("insert_artists", "insert_events", "insert_ticket_types"):
            tx.run(statement, **params)
        mails = 0
        if orders:
            tx.run("create_plan", **params)
            totals = tx.require_one("plan_totals")
            # The newest payverify_rows attempts and mails are kept: these many older ones are not.
            params["attempt_cut"] = max(0, totals["attempts"] - payverify_rows)
            params["mail_cut"] = max(0, totals["mails"] - payverify_rows)
            mails = min(totals["mails"], payverify_rows)
            tx.run("create_attempts")
            tx.run("create_mails")
            for statement in ("insert_orders", "insert_order_items", "insert_tickets", "insert_audit",
                              "insert_order_state", "insert_fulfilment", "insert_outbox", "insert_reconcile"):
                tx.run(statement, **params)
        params["digests"] = payverify_rows - mails
        for statement in ("insert_digests", "insert_runs", "insert_housekeeping"):
            tx.run(statement, **params)
        tx.one("move_identities")
    _vacuum(db)
    seeded = add_due_orders(db, sumup, due) if due and sumup is not None else ()
    return History(orders=orders, payverify_rows=payverify_rows, due=seeded, seconds=time.monotonic() - started)


def _vacuum(db: Database) -> None:
    outside_transaction(db, _queries()["vacuum"])


def add_reconcile_indexes(db: Database) -> None:
    """What a site's team does when doctor asks a reconciling site for its indexes: run its statements."""
    statements = [s.create_statement for s in site_indexes(db) if s.needed.reconcile_only and s.index is None]
    outside_transaction(db, *statements, "ANALYZE orders_order")


def _params(clock: datetime, bases: dict[str, int], *, orders: int, rows: int, years: int, host: str) -> dict[str, Any]:
    start = clock - timedelta(days=365 * years)
    end = clock - HISTORY_ENDS
    first_day = start.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=20)
    step = (end + UPCOMING - first_day) / EVENTS
    cuts = [0.0, *accumulate(share for _, share in STATUS_MIX[:-1])]
    return {
        "clock": clock, "start": start, "end": end, "first_day": first_day, "event_step": step,
        "event_step_seconds": step.total_seconds(), "events": EVENTS, "orders": orders, "rows": rows,
        "covered": min(orders, rows), "latest_slot": int(clock.timestamp() // 300), "host": host,
        "alert_email": ALERT_EMAIL,
        "statuses": [status for status, _ in STATUS_MIX], "status_cuts": cuts,
        "artist_names": list(ARTIST_NAMES), "titles": list(TITLES), "venues": list(VENUES),
        "first_names": list(FIRST_NAMES), "last_names": list(LAST_NAMES), "oauth_every": OAUTH_EVERY,
        "platform_merchant": PLATFORM_MERCHANT, "reconcile_reported": RECONCILE_REPORTED,
        "artist_base": bases["artist"], "event_base": bases["event"], "ticket_type_base": bases["ticket_type"],
        "order_base": bases["order_"], "item_base": bases["item"],
    }


def add_due_orders(db: Database, sumup: FakeSumUp, count: int) -> tuple[SeededOrder, ...]:
    """`count` orders a sweep must settle: pending_verification, one to four minutes old, for upcoming
    events of the catalogue's platform-key artists, PAID at the simulator. Callable again (a benchmark
    re-seeds before each timed sweep)."""
    with db.transaction(_queries()) as tx:
        types = tx.all("due_ticket_types", platform_merchant=PLATFORM_MERCHANT)
    if not types:
        raise ValueError("no upcoming event of a platform-key artist: build_history makes the catalogue")
    seeder = Seeder(db, sumup)
    numbers = _fresh_order_numbers(db, count)
    return tuple(
        seeder.order([(types[i % len(types)]["id"], 1 + i % 2)], event_id=types[i % len(types)]["event_id"],
                     age=timedelta(seconds=60 + (i * 37) % 180), order_number=number,
                     email=f"due{secrets.token_hex(3)}@example.com")
        for i, number in enumerate(numbers))


def _fresh_order_numbers(db: Database, count: int) -> list[str]:
    """Numbers in the site's format that no order has yet: among a million orders, one random number
    in about four thousand is taken, often enough to break a benchmark that seeds hundreds."""
    numbers: set[str] = set()
    while len(numbers) < count:
        wanted = {f"JE-{secrets.token_hex(4).upper()}" for _ in range(count - len(numbers))} - numbers
        with db.transaction(_queries()) as tx:
            taken = {row["order_number"] for row in tx.all("taken_order_numbers", numbers=sorted(wanted))}
        numbers |= wanted - taken
    return sorted(numbers)

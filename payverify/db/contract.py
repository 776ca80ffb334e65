"""The site's side of the contract: the tables and columns payverify reads and writes.

The site is a Django project, so the check accepts what Django makes and what works, not one exact
shape: ids `integer` or `bigint` (AutoField or BigAutoField), strings `varchar(n)` or `text`, money
`numeric`, times `timestamp with time zone`. Checked before every command that needs the database,
so a renamed column or one payverify cannot fill is one clear line (exit 5), not a failed run halfway
through settling orders.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from payverify.db.connection import Tx
from payverify.errors import SchemaMismatch

IDS = frozenset({"integer", "bigint"})
TEXT = frozenset({"character varying", "text"})
MONEY = frozenset({"numeric"})
COUNT = frozenset({"smallint", "integer", "bigint"})
TIME = frozenset({"timestamp with time zone"})
NAIVE_TIME = "timestamp without time zone"

# The longest value payverify writes into a column: a shorter varchar would refuse it mid-settle.
REQUIRES_MANUAL_REVIEW_LENGTH = len("requires_manual_review")


@dataclass(frozen=True)
class Column:
    types: frozenset[str]
    min_length: int | None = None  # for varchar columns payverify writes


def _id() -> Column:
    return Column(IDS)


def _text(min_length: int | None = None) -> Column:
    return Column(TEXT, min_length)


_TIME = Column(TIME)

SITE_COLUMNS: dict[str, dict[str, Column]] = {
    "artists_artist": {
        "id": _id(), "name": _text(), "email": _text(), "sumup_merchant_code": _text(),
        "sumup_access_token": _text(), "sumup_refresh_token": _text(), "sumup_token_expires_at": _TIME,
    },
    "events_event": {
        "id": _id(), "artist_id": _id(), "title": _text(), "venue": _text(), "starts_at": _TIME, "ends_at": _TIME,
    },
    "events_tickettype": {"id": _id(), "event_id": _id(), "name": _text(), "price": Column(MONEY)},
    "orders_order": {
        "id": _id(), "order_number": _text(), "event_id": _id(), "email": _text(), "first_name": _text(),
        "last_name": _text(), "total": Column(MONEY), "currency": _text(),
        "status": _text(REQUIRES_MANUAL_REVIEW_LENGTH), "sumup_checkout_id": _text(),
        "sumup_transaction_code": _text(), "paid_at": _TIME, "created_at": _TIME, "updated_at": _TIME,
    },
    "orders_orderitem": {
        "id": _id(), "order_id": _id(), "ticket_type_id": _id(), "quantity": Column(COUNT),
        "unit_price": Column(MONEY),
    },
    "tickets_ticket": {
        "id": _id(), "order_id": _id(), "order_item_id": _id(), "event_id": _id(), "ticket_type_id": _id(),
        # 32: the length of a door code (tickets.CODE_BYTES of randomness, URL-safe base64).
        "code": _text(32), "holder_name": _text(), "status": _text(len("valid")),
        "created_at": _TIME, "checked_in_at": _TIME,
    },
}

# The one site table payverify inserts into, and the columns its INSERT writes (queries.sql insert_ticket).
TICKETS = "tickets_ticket"
TICKET_COLUMNS_WRITTEN = frozenset({"order_id", "order_item_id", "event_id", "ticket_type_id", "code",
                                    "holder_name", "status", "created_at", "checked_in_at"})


def _type_problem(table: str, column: str, want: Column, row: dict) -> str | None:
    have = row["data_type"]
    where = f"site column {table}.{column}"
    if have == NAIVE_TIME and want.types == TIME:
        return (f"{where} is {NAIVE_TIME}: payverify needs timestamp with time zone (Django's USE_TZ = True), "
                "since a time without a zone cannot be compared safely with SumUp's or another host's")
    if have not in want.types:
        return f"{where} is {have}, payverify expects {' or '.join(sorted(want.types))}"
    length = row["max_length"]
    if want.min_length and length is not None and length < want.min_length:
        return (f"{where} is {have}({length}), too short for what payverify writes there "
                f"(up to {want.min_length} characters)")
    return None


def unfillable_ticket_columns(columns: Iterable[dict], base_columns: Iterable[dict]) -> list[str]:
    """NOT NULL columns without a default that payverify's ticket INSERT would leave empty.

    `columns`: tickets_ticket's own (a table, or a view); `base_columns`: for a view, the columns of
    the table(s) behind it, each with `used` (the view refers to it). A view hides its base's NOT
    NULL: a base column the view never refers to, or one it passes through under a name payverify
    does not write (and with no view default), cannot be filled through it. A view that renames such
    a column is taken to map it to one payverify writes."""
    found = []
    for col in columns:
        if _needs_value(col) and col["column_name"] not in TICKET_COLUMNS_WRITTEN:
            found.append(f"{TICKETS}.{col['column_name']}")
    view_names = {col["column_name"] for col in columns if col["column_default"] is None}
    for col in base_columns:
        name = col["column_name"]
        hidden = not col["used"] or (name in view_names and name not in TICKET_COLUMNS_WRITTEN)
        if _needs_value(col) and hidden:
            found.append(f"{col['table_name']}.{name} (behind the view {TICKETS})")
    return found


def _needs_value(col: dict) -> bool:
    return (col["is_nullable"] == "NO" and col["column_default"] is None and col["is_identity"] != "YES"
            and col["is_generated"] == "NEVER")


def problems(tx: Tx, *, issuing: bool = True) -> list[str]:
    """Every way the site's tables differ from what payverify uses (empty when they match).
    `issuing`: the command may insert tickets, so every NOT NULL ticket column must be fillable."""
    rows = tx.all("site_columns", tables=list(SITE_COLUMNS))
    actual: dict[str, dict[str, dict]] = {}
    for row in rows:
        actual.setdefault(row["table_name"], {})[row["column_name"]] = row
    schema = tx.require_one("current_schema")["schema"]
    found = []
    for table, columns in SITE_COLUMNS.items():
        if table not in actual:
            found.append(f"site table {table} is missing (schema {schema})")
            continue
        for column, want in columns.items():
            have = actual[table].get(column)
            if have is None:
                found.append(f"site table {table} has no column {column}")
            elif problem := _type_problem(table, column, want, have):
                found.append(problem)
    if issuing and TICKETS in actual:
        base = tx.all("view_base_columns", view=TICKETS)
        for name in unfillable_ticket_columns(actual[TICKETS].values(), base):
            found.append(f"site column {name} is NOT NULL without a default, and payverify cannot fill it "
                         "when it issues tickets: give it a default or make it nullable")
    return found


def summary(found: list[str]) -> str:
    """One line: the first problem, how many more, and a hint when tables or columns are missing."""
    more = f" (and {len(found) - 1} more; `payverify doctor` lists them)" if len(found) > 1 else ""
    hint = ": is PAYVERIFY_DATABASE_URL the ticketing site's database?" if found[0].startswith("site table") else ""
    return f"{found[0]}{more}{hint}"


def require_site_tables(tx: Tx, *, issuing: bool = True) -> None:
    """Raise SchemaMismatch (exit 5) naming the first problem, before any order is read or changed."""
    found = problems(tx, issuing=issuing)
    if found:
        raise SchemaMismatch(summary(found))

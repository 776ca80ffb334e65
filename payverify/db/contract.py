"""The site's side of the contract: the tables and columns payverify reads and writes.

Checked before every command that needs the database, so a renamed column is one clear line, not a
failed run halfway through settling orders.
"""

from __future__ import annotations

from payverify.db.connection import Tx
from payverify.errors import SchemaMismatch

# table -> {column: data_type as information_schema reports it}
SITE_COLUMNS: dict[str, dict[str, str]] = {
    "artists_artist": {
        "id": "bigint", "name": "character varying", "email": "character varying",
        "sumup_merchant_code": "character varying", "sumup_access_token": "text",
        "sumup_refresh_token": "text", "sumup_token_expires_at": "timestamp with time zone",
    },
    "events_event": {
        "id": "bigint", "artist_id": "bigint", "title": "character varying", "venue": "character varying",
        "starts_at": "timestamp with time zone", "ends_at": "timestamp with time zone",
    },
    "events_tickettype": {"id": "bigint", "event_id": "bigint", "name": "character varying", "price": "numeric"},
    "orders_order": {
        "id": "bigint", "order_number": "character varying", "event_id": "bigint",
        "email": "character varying", "first_name": "character varying", "last_name": "character varying",
        "total": "numeric", "currency": "character varying", "status": "character varying",
        "sumup_checkout_id": "character varying", "sumup_transaction_code": "character varying",
        "paid_at": "timestamp with time zone", "created_at": "timestamp with time zone",
        "updated_at": "timestamp with time zone",
    },
    "orders_orderitem": {
        "id": "bigint", "order_id": "bigint", "ticket_type_id": "bigint", "quantity": "integer",
        "unit_price": "numeric",
    },
    "tickets_ticket": {
        "id": "bigint", "order_id": "bigint", "order_item_id": "bigint", "event_id": "bigint",
        "ticket_type_id": "bigint", "code": "character varying", "holder_name": "character varying",
        "status": "character varying", "created_at": "timestamp with time zone",
    },
}


def problems(tx: Tx) -> list[str]:
    """Every way the site's tables differ from what payverify uses (empty when they match)."""
    rows = tx.all("site_columns", tables=list(SITE_COLUMNS))
    actual: dict[str, dict[str, str]] = {}
    for row in rows:
        actual.setdefault(row["table_name"], {})[row["column_name"]] = row["data_type"]
    found = []
    for table, columns in SITE_COLUMNS.items():
        if table not in actual:
            found.append(f"site table {table} is missing")
            continue
        for column, data_type in columns.items():
            have = actual[table].get(column)
            if have is None:
                found.append(f"site table {table} has no column {column}")
            elif have != data_type:
                found.append(f"site column {table}.{column} is {have}, payverify expects {data_type}")
    return found


def require_site_tables(tx: Tx) -> None:
    found = problems(tx)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise SchemaMismatch(f"{found[0]}{more}: is PAYVERIFY_DATABASE_URL the ticketing site's database?")

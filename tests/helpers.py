"""Reading the database in assertions, and small things the tests share."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from payverify.db import Database
from payverify.secret import Secret

# Another machine, as payverify judges a host: not localhost, 127.0.0.0/8 or ::1 as written. "127.1" is
# the short form of 127.0.0.1: payverify takes it for another machine (it resolves no name) while the
# connection still reaches the local test server, so a test sees what a remote server would get.
REMOTE_HOST = "127.1"


def rows(db: Database, sql: str, **params: Any) -> list[dict[str, Any]]:
    with db.transaction() as tx:
        return tx.fetch_sql(sql, params)


def scalar(db: Database, sql: str, **params: Any) -> Any:
    """The first column of the first row."""
    return next(iter(rows(db, sql, **params)[0].values()))


def status_of(db: Database, order_id: int) -> str:
    return scalar(db, "SELECT status FROM orders_order WHERE id = %(id)s", id=order_id)


def tickets_of(db: Database, order_id: int) -> int:
    return scalar(db, "SELECT count(*) FROM tickets_ticket WHERE order_id = %(id)s", id=order_id)


def normalised_columns(db: Database, tables: Iterable[str] | None = None) -> list[tuple]:
    """(table, column, type, length, precision, scale, nullability, default, identity) of the current
    schema's tables (or only `tables`), with sequence names in nextval() defaults masked."""
    found = rows(db, """
        SELECT table_name::text, column_name::text, data_type::text, character_maximum_length, numeric_precision,
               numeric_scale, is_nullable::text, column_default::text, is_identity::text
        FROM information_schema.columns
        WHERE table_schema = current_schema() AND (%(tables)s::text[] IS NULL OR table_name = ANY(%(tables)s))
        ORDER BY 1, 2""", tables=sorted(tables) if tables is not None else None)
    return [(*r[:7], re.sub(r"nextval\('[^']*'::regclass\)", "nextval(<seq>)", r[7]) if r[7] else r[7], r[8])
            for r in (tuple(row.values()) for row in found)]


def max_in_any_second(times: list[float]) -> int:
    return max(sum(1 for t in times if start <= t < start + 1.0) for start in times)


def log_has(log_file: str | Path, event: str) -> bool:
    """Whether the payverify JSON log file has a line for `event` yet."""
    try:
        text = Path(log_file).read_text("utf-8")
    except FileNotFoundError:
        return False
    return f'"event": "{event}"' in text or f'"event":"{event}"' in text


@contextlib.contextmanager
def row_locked(database_url: str, order_id: int) -> Iterator[None]:
    """An order's row held FOR UPDATE by another session (as a slow site request would) until the block ends."""
    holder = Database.connect(Secret(database_url), application_name="test-lock-holder")
    try:
        holder._conn.autocommit = False
        with holder._conn.cursor() as cur:
            cur.execute("SELECT id FROM orders_order WHERE id = %s FOR UPDATE", (order_id,))
        yield
    finally:
        holder._conn.rollback()
        holder.close()

"""Reading the database in assertions."""

from __future__ import annotations

from typing import Any

from payverify.db import Database


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

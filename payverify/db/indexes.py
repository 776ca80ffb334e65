"""The site's indexes that payverify's due-order and watch queries rely on (`doctor`'s index check).

payverify never creates or alters anything on the site's tables, so a missing index is the site's to
add: the check names it, with the statement for the site's team to run and the Django line that
makes it. Without an index on orders_order.status every sweep, and every watch poll, reads the whole
table: correct, but its cost grows with every order the site ever took.
"""

from __future__ import annotations

from dataclasses import dataclass

from payverify.db.connection import Database

# (table, column): an index whose first column is this one serves payverify's queries.
NEEDED = (("orders_order", "status"),)

_CATALOG = {
    # A valid btree index on the table with the column first (partial or not); for a view, the
    # answer is the view owner's to give, so it is reported as a view.
    "site_index_on": """
        SELECT current_schema()::text AS schema, c.relkind::text AS relkind,
               (SELECT i.relname::text FROM pg_index x
                JOIN pg_class i ON i.oid = x.indexrelid
                JOIN pg_am am ON am.oid = i.relam AND am.amname = 'btree'
                JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = x.indkey[0]
                WHERE x.indrelid = c.oid AND x.indisvalid AND x.indisready AND a.attname = %(column)s
                ORDER BY x.indpred IS NOT NULL, i.relname LIMIT 1) AS index_name
        FROM pg_class c
        WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
          AND c.relname = %(table)s""",
}


@dataclass(frozen=True)
class IndexState:
    table: str
    column: str
    index: str | None  # the index that serves, if any
    is_view: bool
    create_statement: str  # what the site's team would run when there is none


def site_indexes(db: Database) -> list[IndexState]:
    found = []
    with db.transaction(_CATALOG) as tx:
        for table, column in NEEDED:
            row = tx.require_one("site_index_on", table=table, column=column)
            q = db.quote_identifier
            statement = (f"CREATE INDEX CONCURRENTLY {q(f'{table}_{column}_idx')} "
                         f"ON {q(row['schema'])}.{q(table)} ({q(column)});")
            found.append(IndexState(table, column, row["index_name"], row["relkind"] == "v", statement))
    return found

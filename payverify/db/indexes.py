"""The site's indexes that payverify's queries rely on (`doctor`'s index check).

payverify never creates or alters anything on the site's tables, so a missing index is the site's to
add: the check names it, with the statement for the site's team to run and the Django line that
makes it. Without an index on orders_order.status every sweep, and every watch poll, reads the whole
table: correct, but its cost grows with every order the site ever took. reconcile looks orders up by
transaction code and by when they were paid: a site that reconciles wants those two indexed as well.
"""

from __future__ import annotations

from dataclasses import dataclass

from payverify.db.connection import Database
from payverify.db.queries import catalog


@dataclass(frozen=True)
class Needed:
    """An index whose first column is this one serves payverify's queries."""

    table: str
    column: str
    without: str  # what reads the whole table when there is none
    reconcile_only: bool = False  # needed only once the site reconciles


NEEDED = (
    Needed("orders_order", "status", "every sweep and every watch poll reads the whole table"),
    Needed("orders_order", "sumup_transaction_code",
           "every page of a reconcile run's history reads all of the account's orders", reconcile_only=True),
    Needed("orders_order", "paid_at",
           "every reconcile run reads all of each account's completed orders", reconcile_only=True),
)


@dataclass(frozen=True)
class IndexState:
    needed: Needed
    index: str | None  # the index that serves, if any
    is_view: bool
    in_use: bool  # whether payverify runs the queries it serves here (reconcile's: once it has run)
    create_statement: str  # what the site's team would run when there is none

    @property
    def where(self) -> str:
        return f"{self.needed.table}.{self.needed.column}"


def site_indexes(db: Database) -> list[IndexState]:
    found = []
    with db.transaction(catalog()) as tx:
        counts = tx.require_one("run_counts_table")
        reconciles = counts["present"] and (not counts["readable"] or tx.require_one("reconcile_has_run")["ran"])
        for needed in NEEDED:
            table, column = needed.table, needed.column
            row = tx.require_one("site_index_on", table=table, column=column)
            q = db.quote_identifier
            statement = (f"CREATE INDEX CONCURRENTLY {q(f'{table}_{column}_idx')} "
                         f"ON {q(row['schema'])}.{q(table)} ({q(column)});")
            found.append(IndexState(needed, row["index_name"], row["relkind"] == "v",
                                    reconciles or not needed.reconcile_only, statement))
    return found

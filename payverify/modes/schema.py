"""`payverify db upgrade` and `db grants`: payverify's own schema, and the rights a run-time role needs.

Both first check the site's tables as payverify expects them; grants also wants payverify's schema
current, since the rights it prints name payverify's tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from payverify.db.contract import require_site_tables
from payverify.db.grants import plan, statements
from payverify.db.migrate import Migration, require_current, upgrade
from payverify.modes.runtime import Runtime


def upgrade_schema(rt: Runtime) -> list[Migration]:
    """Apply what is missing of payverify's schema; the migrations applied (none: it was current)."""
    with rt.database(check_schema=False) as database:
        with database.transaction() as tx:
            require_site_tables(tx)
        return upgrade(database)


@dataclass(frozen=True)
class Grants:
    role: str  # quoted as an identifier
    statements: list[str]


def grants_for(rt: Runtime, role: str) -> Grants:
    """The SQL that gives `role` exactly the rights payverify needs at run time, from the database's names."""
    with rt.database(check_schema=False) as database:
        with database.transaction() as tx:
            require_site_tables(tx)
            require_current(tx)
        found = plan(database, role)
        return Grants(role=database.quote_identifier(role),
                      statements=statements(found, role, database.quote_identifier))

"""What payverify needs of the database at run time, as GRANT statements (`payverify db grants ROLE`).

Every run-time command (sweep, watch, check, resend, pending, reconcile, doctor, metrics) works with
exactly these rights; the test suite runs them as a role made from this output, so a query that needs
more fails a test. `db upgrade` is not covered: creating and altering payverify's tables needs their
owner. The site's tables get column rights: payverify reads the columns of the contract, updates only
what settling an order and refreshing an artist's token change, and inserts tickets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from payverify.db.connection import Database
from payverify.db.contract import SITE_COLUMNS, TICKET_COLUMNS_WRITTEN, TICKETS
from payverify.errors import SchemaMismatch

# The ticket columns payverify reads back (check, resend and the confirmation list the tickets).
TICKET_COLUMNS_READ = ("id", "order_id", "ticket_type_id", "code", "holder_name")

SITE_SELECT: dict[str, tuple[str, ...]] = {
    table: (TICKET_COLUMNS_READ if table == TICKETS else tuple(columns)) for table, columns in SITE_COLUMNS.items()
}
SITE_UPDATE: dict[str, tuple[str, ...]] = {
    "orders_order": ("status", "paid_at", "sumup_transaction_code", "updated_at"),
    # Refreshing an artist's OAuth token stores the rotated pair (and locks the row FOR UPDATE,
    # which needs UPDATE on at least one column).
    "artists_artist": ("sumup_access_token", "sumup_refresh_token", "sumup_token_expires_at"),
}
SITE_INSERT: dict[str, tuple[str, ...]] = {TICKETS: tuple(sorted(TICKET_COLUMNS_WRITTEN))}

# payverify's own tables: everything a run does to rows (retention deletes old ones), nothing to the
# tables themselves. Its schema version is only read at run time.
OWN_RIGHTS = "SELECT, INSERT, UPDATE, DELETE"
READ_ONLY_OWN = frozenset({"payverify_schema_version"})

_MAX_ROLE_BYTES = 63  # Postgres would silently cut a longer name to 63 bytes: another role's name

_CATALOG = {
    "grants_context": """
        SELECT current_database()::text AS database, current_schema()::text AS site_schema,
               EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %(role)s) AS role_exists""",
    "grants_own_tables": r"""
        SELECT c.relname::text AS name FROM pg_class c
        WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = %(schema)s)
          AND c.relkind IN ('r', 'p') AND c.relname LIKE 'payverify\_%%'
        ORDER BY c.relname""",
    # Sequences behind serial and identity columns of the given tables, or of the tables behind them
    # when they are views: a serial default's nextval() is checked against the inserting role.
    "grants_sequences": """
        WITH named AS (
            SELECT c.oid FROM pg_class c
            WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = %(schema)s)
              AND c.relname = ANY(%(tables)s)),
        behind AS (
            SELECT oid FROM named
            UNION
            SELECT dep.refobjid FROM named
            JOIN pg_rewrite r ON r.ev_class = named.oid AND r.rulename = '_RETURN'
            JOIN pg_depend dep ON dep.classid = 'pg_rewrite'::regclass AND dep.objid = r.oid
                              AND dep.refclassid = 'pg_class'::regclass AND dep.refobjid <> named.oid)
        SELECT DISTINCT n.nspname::text AS schema, s.relname::text AS name
        FROM behind
        JOIN pg_depend d ON d.refobjid = behind.oid AND d.refclassid = 'pg_class'::regclass
                        AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
        JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
        JOIN pg_namespace n ON n.oid = s.relnamespace
        ORDER BY 1, 2""",
}


def role_name_problem(role: str) -> str | None:
    """Why GRANT could not name `role` exactly (None when it can). Control characters are refused
    too: the name also appears in the output's comments."""
    if not role or not role.isprintable():
        return "is not a role name (empty, or with control characters)"
    if len(role.encode("utf-8")) > _MAX_ROLE_BYTES:
        return f"is longer than {_MAX_ROLE_BYTES} bytes, which Postgres would cut to another role's name"
    if role.lower() == "public" or role.startswith("pg_"):
        return "is reserved by Postgres: name the role payverify logs in as"
    return None


@dataclass(frozen=True)
class Plan:
    """Where the grants go, as read from the database's catalog."""

    database: str
    site_schema: str
    own_schema: str
    own_tables: tuple[str, ...]
    site_sequences: tuple[tuple[str, str], ...]
    own_sequences: tuple[tuple[str, str], ...]
    role_exists: bool


def plan(db: Database, role: str) -> Plan:
    """Read the catalog: the site's schema, payverify's tables and the sequences behind their ids."""
    with db.transaction(_CATALOG) as tx:
        context = tx.require_one("grants_context", role=role)
        site_schema = context["site_schema"]
        own_schema = db.own_schema or site_schema
        own_tables = tuple(row["name"] for row in tx.all("grants_own_tables", schema=own_schema))
        if not own_tables:
            raise SchemaMismatch(f"payverify's tables are not in schema {own_schema}: "
                                 "run `payverify db upgrade` (as their owner) first")
        site_sequences = tx.all("grants_sequences", schema=site_schema, tables=[TICKETS])
        own_sequences = tx.all("grants_sequences", schema=own_schema, tables=list(own_tables))
    return Plan(context["database"], site_schema, own_schema, own_tables,
                tuple((r["schema"], r["name"]) for r in site_sequences),
                tuple((r["schema"], r["name"]) for r in own_sequences), context["role_exists"])


def statements(p: Plan, role: str, quote: Callable[[str], str]) -> list[str]:
    """The SQL, one statement per line (with comments), quoting every name with `quote`."""
    to = quote(role)

    def table(schema: str, name: str) -> str:
        return f"{quote(schema)}.{quote(name)}"

    def columns(names: tuple[str, ...]) -> str:
        return ", ".join(quote(c) for c in names)

    lines = []
    if not p.role_exists:
        lines.append(f"-- role {to} does not exist yet: CREATE ROLE {to} LOGIN PASSWORD '...'; first")
    lines += ["BEGIN;", f"GRANT CONNECT ON DATABASE {quote(p.database)} TO {to};"]
    for schema in dict.fromkeys((p.site_schema, p.own_schema)):
        lines.append(f"GRANT USAGE ON SCHEMA {quote(schema)} TO {to};")
    lines.append("-- the site's tables: read what payverify reads; write only what settling changes")
    for name, read in SITE_SELECT.items():
        lines.append(f"GRANT SELECT ({columns(read)}) ON {table(p.site_schema, name)} TO {to};")
    for name, written in SITE_UPDATE.items():
        lines.append(f"GRANT UPDATE ({columns(written)}) ON {table(p.site_schema, name)} TO {to};")
    for name, inserted in SITE_INSERT.items():
        lines.append(f"GRANT INSERT ({columns(inserted)}) ON {table(p.site_schema, name)} TO {to};")
    for schema, name in p.site_sequences:
        lines.append(f"GRANT USAGE ON SEQUENCE {table(schema, name)} TO {to};")
    lines.append("-- payverify's own tables: their rows, never their definitions")
    read_write = [table(p.own_schema, t) for t in p.own_tables if t not in READ_ONLY_OWN]
    read_only = [table(p.own_schema, t) for t in p.own_tables if t in READ_ONLY_OWN]
    if read_only:
        lines.append(f"GRANT SELECT ON {', '.join(read_only)} TO {to};")
    lines.append(f"GRANT {OWN_RIGHTS} ON {', '.join(read_write)} TO {to};")
    if p.own_sequences:
        sequences = ", ".join(table(schema, name) for schema, name in p.own_sequences)
        lines.append(f"GRANT USAGE ON SEQUENCE {sequences} TO {to};")
    lines.append("COMMIT;")
    return lines

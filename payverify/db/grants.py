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
from payverify.db.queries import catalog
from payverify.errors import SchemaMismatch

# What the run-time queries read of each site table (queries.sql; the contract check itself reads
# pg_catalog, which needs no right). UPDATE's WHERE and CASE, and RETURNING, read too.
SITE_SELECT: dict[str, tuple[str, ...]] = {
    "artists_artist": ("id", "name", "sumup_merchant_code", "sumup_access_token", "sumup_refresh_token",
                       "sumup_token_expires_at"),
    "events_event": ("id", "artist_id", "title", "venue", "starts_at", "ends_at"),
    "events_tickettype": ("id", "name"),
    "orders_order": tuple(SITE_COLUMNS["orders_order"]),
    "orders_orderitem": ("id", "order_id", "ticket_type_id", "quantity", "unit_price"),
    # The tickets read back (check, resend and the confirmation list them).
    TICKETS: ("id", "order_id", "ticket_type_id", "code", "holder_name"),
}
SITE_UPDATE: dict[str, tuple[str, ...]] = {
    "orders_order": ("status", "paid_at", "sumup_transaction_code", "updated_at"),
    # Refreshing an artist's OAuth token stores the rotated pair (and locks the row FOR UPDATE,
    # which needs UPDATE on at least one column).
    "artists_artist": ("sumup_access_token", "sumup_refresh_token", "sumup_token_expires_at"),
}
SITE_INSERT: dict[str, tuple[str, ...]] = {TICKETS: tuple(sorted(TICKET_COLUMNS_WRITTEN))}

# payverify's own tables: what a run does to their rows, table by table, and nothing to the tables
# themselves. No UPDATE or DELETE on fulfilment rows (the database's backstop against a second issue)
# or on reported discrepancies; the audit is only appended to and, past the retention, deleted.
OWN_RIGHTS: dict[str, tuple[str, ...]] = {
    "payverify_schema_version": ("SELECT",),
    "payverify_order_state": ("SELECT", "INSERT", "UPDATE"),
    "payverify_fulfilment": ("INSERT",),
    "payverify_audit": ("SELECT", "INSERT", "DELETE"),
    "payverify_outbox": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "payverify_runs": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "payverify_reconcile_cursor": ("SELECT", "INSERT", "UPDATE"),
    "payverify_reconcile_reported": ("SELECT", "INSERT"),
    "payverify_housekeeping": ("SELECT", "INSERT", "UPDATE"),
    "payverify_run_counts": ("SELECT", "INSERT", "UPDATE"),  # through payverify_runs' trigger
    # Its own row while it runs (db/presence.py), others' read by the claims; retention deletes the silent.
    "payverify_processes": ("SELECT", "INSERT", "UPDATE", "DELETE"),
}

_MAX_ROLE_BYTES = 63  # Postgres would silently cut a longer name to 63 bytes: another role's name


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
class Sequence:
    schema: str
    name: str
    oid: int


@dataclass(frozen=True)
class Plan:
    """Where the grants go, as read from the database's catalog."""

    database: str
    site_schema: str
    own_schema: str
    own_tables: tuple[str, ...]
    site_sequences: tuple[Sequence, ...]
    own_sequences: tuple[Sequence, ...]
    role_exists: bool


def plan(db: Database, role: str) -> Plan:
    """Read the catalog: the site's schema, payverify's tables and the sequences behind their ids."""
    with db.transaction(catalog()) as tx:
        context = tx.require_one("grants_context", role=role)
        site_schema = context["site_schema"]
        own_schema = db.own_schema or site_schema
        own_tables = tuple(row["name"] for row in tx.all("grants_own_tables", schema=own_schema))
        if not own_tables:
            raise SchemaMismatch(f"payverify's tables are not in schema {own_schema}: "
                                 "run `payverify db upgrade` (as their owner) first")
        if unknown := [t for t in own_tables if t not in OWN_RIGHTS]:
            raise SchemaMismatch(f"payverify's table {unknown[0]} is not one this payverify knows: "
                                 "is the database's payverify newer than this one?")
        if invoker := tx.all("grants_invoker_views", schema=site_schema, tables=list(SITE_COLUMNS)):
            raise SchemaMismatch(
                f"the site's view {invoker[0]['name']} has security_invoker set, so its base tables' rights are "
                "checked against payverify's role, and `db grants` names only the view's columns: grant the "
                "role those base columns yourself, or make the view security_invoker = false")
        site_sequences = tx.all("grants_sequences", schema=site_schema, tables=list(SITE_INSERT))
        own_sequences = tx.all("grants_sequences", schema=own_schema,
                               tables=[t for t in own_tables if "INSERT" in OWN_RIGHTS[t]])
    return Plan(context["database"], site_schema, own_schema, own_tables,
                tuple(Sequence(r["schema"], r["name"], r["oid"]) for r in site_sequences),
                tuple(Sequence(r["schema"], r["name"], r["oid"]) for r in own_sequences), context["role_exists"])


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
    for seq in p.site_sequences:
        lines.append(f"GRANT USAGE ON SEQUENCE {table(seq.schema, seq.name)} TO {to};")
    lines.append("-- payverify's own tables: what a run does to their rows, never their definitions")
    for name in p.own_tables:
        lines.append(f"GRANT {', '.join(OWN_RIGHTS[name])} ON {table(p.own_schema, name)} TO {to};")
    if p.own_sequences:
        sequences = ", ".join(table(seq.schema, seq.name) for seq in p.own_sequences)
        lines.append(f"GRANT USAGE ON SEQUENCE {sequences} TO {to};")
    lines.append("COMMIT;")
    return lines

"""The site contract: the column types payverify accepts, and the ticket columns it cannot fill."""

from __future__ import annotations

from datetime import timedelta

import pytest

from payverify.db import Database
from payverify.db.contract import problems
from payverify.exitcodes import ExitStatus
from payverify.secret import Secret
from payverify_dev.seed import load_site_schema
from tests.cli_runner import invoke, one_line
from tests.helpers import rows, scalar


def alter(db: Database, *statements: str) -> None:
    with db.transaction() as tx:
        for statement in statements:
            tx.script(statement)


def contract_problems(db: Database) -> list[str]:
    with db.transaction() as tx:
        return problems(tx)


def test_integer_ids_and_text_columns_are_accepted(db):
    """AutoField (integer) ids and foreign keys, and text instead of varchar, match the contract."""
    alter(db, *(f"ALTER TABLE {t} ALTER COLUMN {c} TYPE integer" for t, c in (
        ("artists_artist", "id"), ("events_event", "artist_id"), ("orders_order", "event_id"),
        ("orders_orderitem", "order_id"), ("tickets_ticket", "order_item_id"))),
        "ALTER TABLE orders_order ALTER COLUMN email TYPE text",
        "ALTER TABLE tickets_ticket ALTER COLUMN code TYPE text")
    assert contract_problems(db) == []


@pytest.mark.parametrize("statement, expected", [
    ("ALTER TABLE orders_order ALTER COLUMN created_at TYPE timestamp without time zone",
     "site column orders_order.created_at is timestamp without time zone: payverify needs timestamp with time "
     "zone (Django's USE_TZ = True), since a time without a zone cannot be compared safely"),
    ("ALTER TABLE orders_order ALTER COLUMN total TYPE double precision",
     "site column orders_order.total is double precision, payverify expects numeric"),
    ("ALTER TABLE orders_orderitem ALTER COLUMN quantity TYPE numeric",
     "site column orders_orderitem.quantity is numeric, payverify expects bigint or integer or smallint"),
    ("ALTER TABLE tickets_ticket ALTER COLUMN code TYPE varchar(16)",
     "site column tickets_ticket.code is character varying(16), too short for what payverify writes there "
     "(up to 32 characters)"),
    ("ALTER TABLE orders_order ALTER COLUMN status TYPE varchar(20)",
     "site column orders_order.status is character varying(20), too short"),
])
def test_columns_payverify_cannot_use_are_named(db, statement, expected):
    """A type or length payverify cannot use is one problem naming the table, the column and why."""
    alter(db, statement)
    found = contract_problems(db)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_a_not_null_domain_ticket_column_counts_as_not_null(db):
    """A column whose domain is NOT NULL is as unfillable as a NOT NULL column (as information_schema says)."""
    alter(db, "CREATE DOMAIN seat_label AS varchar(10) NOT NULL",
          "ALTER TABLE tickets_ticket ADD COLUMN seat seat_label")
    found = contract_problems(db)
    assert len(found) == 1 and found[0].startswith("site column tickets_ticket.seat is NOT NULL without a default")


def test_a_materialized_view_is_not_a_site_table(db):
    """payverify writes to orders_order: a materialized view of that name cannot stand for it."""
    alter(db, "ALTER TABLE orders_order RENAME TO orders_order_real",
          "CREATE MATERIALIZED VIEW orders_order AS SELECT * FROM orders_order_real")
    assert contract_problems(db)[0].startswith("site table orders_order is missing")


@pytest.fixture
def paid_order(seed):
    artist = seed.artist()
    event = seed.event(artist)
    return seed.order([(seed.ticket_type(event), 2)], event_id=event)


def _snapshot(db: Database) -> list[dict]:
    return rows(db, "SELECT id, status, updated_at, paid_at FROM orders_order ORDER BY id")


@pytest.mark.parametrize("command", [("db", "upgrade"), ("doctor",), ("sweep",), ("check", "ORDER"),
                                     ("resend", "ORDER")])
def test_extra_not_null_ticket_column_stops_every_command(db, sumup, paid_order, run_payverify, command):
    """An extra NOT NULL ticket column without a default: exit 5 naming it, before any order is read or changed."""
    alter(db, "ALTER TABLE tickets_ticket ADD COLUMN seat varchar(10) NOT NULL")
    before = _snapshot(db)
    result = run_payverify(*(paid_order.order_number if arg == "ORDER" else arg for arg in command))
    assert result.returncode == ExitStatus.SCHEMA, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    output = result.stdout if command == ("doctor",) else result.stderr
    line = next(line for line in output.splitlines() if "tickets_ticket.seat" in line)
    assert "NOT NULL without a default" in line and "cannot fill it" in line
    if command != ("doctor",):
        assert len(result.stderr.strip().splitlines()) == 1
    assert _snapshot(db) == before
    assert scalar(db, "SELECT count(*) FROM tickets_ticket") == 0
    assert scalar(db, "SELECT count(*) FROM payverify_audit") == 0
    assert scalar(db, "SELECT count(*) FROM payverify_order_state") == 0
    assert sumup.get_count() == 0


def test_extra_nullable_or_defaulted_ticket_columns_are_fine(db, paid_order, run_payverify):
    """Extra ticket columns that are nullable or have a default do not stop payverify from issuing tickets."""
    alter(db, "ALTER TABLE tickets_ticket ADD COLUMN seat varchar(10) NULL",
          "ALTER TABLE tickets_ticket ADD COLUMN gate varchar(10) NOT NULL DEFAULT 'main'")
    result = run_payverify("sweep")
    assert result.returncode == ExitStatus.OK, result.stderr
    assert scalar(db, "SELECT status FROM orders_order WHERE id = %(id)s", id=paid_order.id) == "completed"
    assert rows(db, "SELECT gate, seat FROM tickets_ticket") == [{"gate": "main", "seat": None}] * 2


def test_ticket_insert_writes_every_not_null_column(db, paid_order, run_payverify):
    """The ticket rows carry created_at (the database's clock), status and holder name; the order's updated_at moved."""
    updated_before = scalar(db, "SELECT updated_at FROM orders_order WHERE id = %(id)s", id=paid_order.id)
    assert run_payverify("sweep").returncode == ExitStatus.OK
    tickets = rows(db, "SELECT t.created_at, t.status, t.holder_name, o.paid_at, o.updated_at "
                       "FROM tickets_ticket t JOIN orders_order o ON o.id = t.order_id")
    assert len(tickets) == 2
    for t in tickets:
        assert t["status"] == "valid" and t["holder_name"] == "Alex Morgan"
        assert t["created_at"] == t["paid_at"] == t["updated_at"]  # one transaction, one clock
        assert t["updated_at"] - updated_before > timedelta(minutes=4)


def test_pending_still_reads_when_tickets_cannot_be_issued(db, paid_order, run_payverify):
    """`pending` only reads: an unfillable ticket column does not stop on-call from seeing the orders."""
    alter(db, "ALTER TABLE tickets_ticket ADD COLUMN seat varchar(10) NOT NULL")
    result = run_payverify("pending")
    assert result.returncode == ExitStatus.OK, result.stderr
    assert paid_order.order_number in result.stdout


@pytest.mark.parametrize("args", [("sweep",), ("check", "JE-1")])
def test_database_without_site_tables(empty_database_url, args):
    """A database that is not the site's: exit 5 naming a missing site table."""
    result = invoke(*args, env={"PAYVERIFY_DATABASE_URL": empty_database_url})
    assert result.returncode == ExitStatus.SCHEMA == 5
    line = one_line(result)
    assert "missing" in line and any(t in line for t in ("artists_artist", "orders_order", "events_event"))


@pytest.fixture
def site_only_database_url(empty_database_url) -> str:
    """A database with the site's tables and no payverify schema yet."""
    with Database.connect(Secret(empty_database_url)) as db:
        load_site_schema(db)
    return empty_database_url


@pytest.mark.parametrize("args", [("sweep",), ("sweep", "--dry-run"), ("check", "JE-1")])
def test_schema_not_upgraded(site_only_database_url, args):
    """Site tables present, payverify's not created: exit 5 telling the user to run `payverify db upgrade`."""
    result = invoke(*args, env={"PAYVERIFY_DATABASE_URL": site_only_database_url})
    assert result.returncode == ExitStatus.SCHEMA
    assert "payverify db upgrade" in one_line(result)

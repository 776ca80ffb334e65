"""PAYVERIFY_SITE_SCHEMA: a site with other names, adapted by the README's view file, works unchanged."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from payverify.db import Database
from payverify.exitcodes import ExitStatus
from payverify.secret import Secret
from payverify_dev.seed import Seeder, load_site_schema
from tests.conftest import DIRECT_AND_THROUGH_PGBOUNCER
from tests.helpers import rows, scalar

VIEWS = Path(__file__).resolve().parents[2] / "examples" / "site-views.sql"
SCHEMA = "payverify_site"


@pytest.fixture
def site_url(empty_database_url) -> str:
    """A site whose orders call the number `reference` and the total `amount_total`, with the example views."""
    with Database.connect(Secret(empty_database_url)) as db:
        load_site_schema(db)
        with db.transaction() as tx:
            tx.script("ALTER TABLE orders_order RENAME COLUMN order_number TO reference; "
                      "ALTER TABLE orders_order RENAME COLUMN total TO amount_total")
            tx.script(VIEWS.read_text(encoding="utf-8"))
    return empty_database_url


@pytest.fixture
def site_db(site_url):
    """A connection that sees the site through the views (the seeder writes through them, too)."""
    with Database.connect(Secret(site_url), site_schema=SCHEMA) as db:
        yield db


@pytest.fixture
def views_env(env, site_url) -> dict[str, str]:
    return {**env, "PAYVERIFY_DATABASE_URL": site_url, "PAYVERIFY_SITE_SCHEMA": SCHEMA}


def payverify_tables(url: str) -> set[tuple[str, str]]:
    with Database.connect(Secret(url)) as db:
        return {(r["table_schema"], r["table_name"]) for r in rows(
            db, "SELECT table_schema::text, table_name::text FROM information_schema.tables "
                "WHERE table_name LIKE 'payverify%%'")}


@DIRECT_AND_THROUGH_PGBOUNCER
def test_views_settle_orders_and_keep_payverify_tables_out_of_the_site_schema(
        site_url, site_db, sumup, smtp, views_env, run_payverify, run_role, pooled, request):
    """db upgrade (as the owner), then doctor, sweep and check as the role `db grants` sets up, work
    through the views; payverify_* tables land in public only. Through a transaction-pooling PgBouncer
    too, where no session keeps a search_path: each transaction sets its own."""
    upgrade = run_payverify("db", "upgrade", extra_env=views_env)
    assert upgrade.returncode == ExitStatus.OK, upgrade.stderr
    tables = payverify_tables(site_url)
    assert tables and {schema for schema, _ in tables} == {"public"}
    applied = run_role.grant(site_url, {"PAYVERIFY_SITE_SCHEMA": SCHEMA})
    assert f'ON "{SCHEMA}"."orders_order"' in applied and '"public"."payverify_outbox"' in applied
    run_url = run_role.url(site_url)
    views_env = {**views_env,
                 "PAYVERIFY_DATABASE_URL": request.getfixturevalue("pgbouncer").url(run_url) if pooled else run_url}

    doctor = run_payverify("doctor", extra_env=views_env)
    site_line = next(line for line in doctor.stdout.splitlines() if "site tables" in line)
    assert site_line.startswith("ok") and f"schema {SCHEMA}, from PAYVERIFY_SITE_SCHEMA" in site_line, doctor.stdout
    assert "ok    payverify schema" in doctor.stdout

    seed = Seeder(site_db, sumup)
    artist = seed.artist()
    event, over = seed.event(artist), seed.event(artist, "Matinee", starts_in=timedelta(days=-2))
    standing, past = seed.ticket_type(event, "Standing", "12.50"), seed.ticket_type(over, "General", "10.00")
    minutes = timedelta(minutes=1)
    cases = {  # the decision table, row by row: (order, the status it must end in)
        "paid": (seed.order([(standing, 3)], event_id=event), "completed"),
        "paid, never came back": (seed.order([(standing, 1)], event_id=event, status="pending"), "completed"),
        "declined, in the grace": (seed.order([(standing, 1)], event_id=event, sumup_status="FAILED",
                                              age=10 * minutes), "pending_verification"),
        "declined, grace over": (seed.order([(standing, 1)], event_id=event, sumup_status="FAILED",
                                            age=45 * minutes), "failed"),
        "still paying": (seed.order([(standing, 1)], event_id=event, sumup_status="PENDING"),
                         "pending_verification"),
        "abandoned": (seed.order([(standing, 1)], event_id=event, status="pending", sumup_status="PENDING",
                                 age=180 * minutes), "expired"),
        "expired at SumUp": (seed.order([(standing, 1)], event_id=event, sumup_status="EXPIRED"), "expired"),
        "unknown to SumUp": (seed.order([(standing, 1)], event_id=event, sumup_status=None),
                             "requires_manual_review"),
        "short payment": (seed.order([(standing, 2)], event_id=event, sumup_amount="12.50"),
                          "requires_manual_review"),
        "event over": (seed.order([(past, 1)], event_id=over), "requires_manual_review"),
        "late payment": (seed.order([(standing, 2)], event_id=event, status="failed", age=180 * minutes),
                         "completed"),
        "status unknown to payverify": (seed.order([(standing, 1)], event_id=event, status="on_hold"), "on_hold"),
    }

    sweep = run_payverify("sweep", extra_env=views_env)
    assert sweep.returncode == ExitStatus.OK, sweep.stderr
    with Database.connect(Secret(site_url)) as base:  # the site's own tables, under the site's own names
        state = {r["reference"]: r for r in rows(base, "SELECT reference, status, updated_at FROM orders_order")}
        for scenario, (order, want) in cases.items():
            assert state[order.order_number]["status"] == want, scenario
            tickets = scalar(base, "SELECT count(*) FROM tickets_ticket WHERE order_id = %(id)s", id=order.id)
            assert tickets == (order.admissions if want == "completed" else 0), scenario

        by_check = seed.order([(standing, 1)], event_id=event)
        check = run_payverify("check", by_check.order_number, extra_env=views_env)
        assert check.returncode == ExitStatus.OK, check.stderr
        assert "order is now completed" in check.stdout
        assert scalar(base, "SELECT status FROM orders_order WHERE id = %(id)s", id=by_check.id) == "completed"
        assert scalar(base, "SELECT count(*) FROM tickets_ticket WHERE order_id = %(id)s", id=by_check.id) == 1
    confirmations = [m for m in smtp.messages if m.parsed()["Subject"].startswith("Your tickets")]
    assert len(confirmations) == 4  # three paid in the sweep, one by check
    assert payverify_tables(site_url) == tables  # nothing new anywhere, least of all in the site schema


def test_without_the_schema_setting_the_renamed_tables_are_refused(site_url, views_env, run_payverify):
    """The same database without PAYVERIFY_SITE_SCHEMA: exit 5 naming the column the site renamed."""
    result = run_payverify("db", "upgrade", extra_env={**views_env, "PAYVERIFY_SITE_SCHEMA": ""})  # blank: unset
    assert result.returncode == ExitStatus.SCHEMA
    assert result.stderr.startswith("payverify: site table orders_order has no column order_number")


def test_a_missing_site_schema_is_one_line(site_url, views_env, run_payverify):
    """PAYVERIFY_SITE_SCHEMA naming a schema that does not exist: exit 5, one line naming it."""
    result = run_payverify("sweep", extra_env={**views_env, "PAYVERIFY_SITE_SCHEMA": "no_such_schema"})
    assert result.returncode == ExitStatus.SCHEMA
    assert result.stderr == ("payverify: PAYVERIFY_SITE_SCHEMA names schema 'no_such_schema', "
                             "which does not exist in the database\n")


def test_a_not_null_column_hidden_behind_the_view_is_refused(site_url, views_env, run_payverify):
    """A NOT NULL ticket column the view does not show cannot be filled through it: exit 5 naming it."""
    with Database.connect(Secret(site_url)) as db, db.transaction() as tx:
        tx.script("ALTER TABLE public.tickets_ticket ADD COLUMN seat varchar(10) NOT NULL")
    result = run_payverify("db", "upgrade", extra_env=views_env)
    assert result.returncode == ExitStatus.SCHEMA
    assert "public.tickets_ticket.seat (behind the view tickets_ticket) is NOT NULL without a default" in result.stderr
    assert payverify_tables(site_url) == set()


def test_the_run_role_is_told_of_a_not_null_column_behind_the_view(site_url, views_env, run_payverify, run_role):
    """As the role of `db grants` (no right on the base table, nor ownership of the view), the column
    hidden behind the view is still found: exit 5 naming it, nothing settled."""
    assert run_payverify("db", "upgrade", extra_env=views_env).returncode == ExitStatus.OK
    run_role.grant(site_url, {"PAYVERIFY_SITE_SCHEMA": SCHEMA})
    with Database.connect(Secret(site_url)) as db, db.transaction() as tx:
        tx.script("ALTER TABLE public.tickets_ticket ADD COLUMN seat varchar(10) NOT NULL")
    result = run_payverify("sweep", extra_env={**views_env, "PAYVERIFY_DATABASE_URL": run_role.url(site_url)})
    assert result.returncode == ExitStatus.SCHEMA, result.stderr
    assert "public.tickets_ticket.seat (behind the view tickets_ticket) is NOT NULL without a default" in result.stderr


def test_config_shows_the_site_schema(views_env, run_payverify):
    """`payverify config` says which schema holds the site's tables, and what unset means."""
    shown = run_payverify("config", extra_env=views_env)
    assert f"PAYVERIFY_SITE_SCHEMA = {SCHEMA}  (from environment)" in shown.stdout
    unset = run_payverify("config", extra_env={**views_env, "PAYVERIFY_SITE_SCHEMA": ""})
    assert "PAYVERIFY_SITE_SCHEMA = (not set: the site's tables are found through the connection's search_path)" \
        in unset.stdout

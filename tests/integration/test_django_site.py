"""payverify against the tables Django's own migrations make, with BigAutoField and with AutoField ids.

The site's models live in tests/django_site; its migrations are generated and applied afresh every
session (one template database per id flavour), each test gets a clone after the real
`payverify db upgrade`, seeds it through the ORM and reads the outcome back through the ORM, where
full_clean() judges every row payverify wrote the way the site's own forms and admin would.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from datetime import timedelta
from urllib.parse import urlsplit

import pytest

from payverify.db import Database
from payverify.db.contract import SITE_COLUMNS
from payverify.exitcodes import ExitStatus
from payverify.secret import Secret
from tests.conftest import DIRECT_AND_THROUGH_PGBOUNCER, ROOT, scratch_database
from tests.django_site.harness import FLAVOURS, configure_orm, migrate, orm_database
from tests.helpers import normalised_columns, rows
from tests.invariants import assert_invariants, check_invariants

configure_orm()  # before the models can be imported

from tests.django_site.artists.models import Artist  # noqa: E402
from tests.django_site.orders.models import Order  # noqa: E402
from tests.django_site.seed import OrmSeeder  # noqa: E402
from tests.django_site.tickets.models import Ticket  # noqa: E402

SHARED_SITE_SCHEMA = ROOT.parent / "shared" / "site-schema.sql"
SITE_TABLES = sorted(SITE_COLUMNS)
FOREIGN_KEYS = {("events_event", "artist_id"), ("events_tickettype", "event_id"), ("orders_order", "event_id"),
                ("orders_orderitem", "order_id"), ("orders_orderitem", "ticket_type_id"),
                ("tickets_ticket", "event_id"), ("tickets_ticket", "order_id"), ("tickets_ticket", "order_item_id"),
                ("tickets_ticket", "ticket_type_id")}
COMPLETED = Order.Status.COMPLETED


def db_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


@pytest.fixture(scope="session")
def django_templates(pg_url, tmp_path_factory):
    """flavour -> URL of a database migrated by Django with those ids; each built once, on first use."""
    built: dict[str, str] = {}
    with contextlib.ExitStack() as cleanup:
        def template(flavour: str) -> str:
            if flavour not in built:
                url = cleanup.enter_context(scratch_database(pg_url, f"pv_dj_tpl_{flavour.lower()}"))
                migrate(url, flavour, tmp_path_factory.mktemp(f"migrations_{flavour}"))
                built[flavour] = url
            return built[flavour]

        yield template


@pytest.fixture(params=FLAVOURS)
def flavour(request) -> str:
    return request.param


@pytest.fixture
def database_url(pg_url, django_templates, flavour, tmp_path, run_role):
    """Overrides conftest's, so that `env`, `run_payverify` and `db` use it: a clone of the Django-made
    template of this flavour, after the real `payverify db upgrade` and `payverify db grants` for the
    run role (which `env` connects as: Django's identity or serial ids need no more than it grants)."""
    with scratch_database(pg_url, "pv_dj", db_name(django_templates(flavour))) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PAYVERIFY_", "SUMUP_"))}
        env.update({"PAYVERIFY_DATABASE_URL": url, "PAYVERIFY_LOG_FILE": str(tmp_path / "upgrade.log")})
        upgrade = subprocess.run([sys.executable, "-m", "payverify", "db", "upgrade"], env=env, cwd=ROOT,
                                 capture_output=True, text=True, timeout=120)
        assert upgrade.returncode == ExitStatus.OK, f"db upgrade exited {upgrade.returncode}: {upgrade.stderr}"
        run_role.grant(url)
        yield url


@pytest.fixture
def site(database_url, sumup):
    """The ORM pointed at this test's database, and a seeder that writes through it."""
    with orm_database(database_url):
        yield OrmSeeder(sumup)


# ---- helpers -------------------------------------------------------------------------------------

def catalogue(db: Database) -> dict[str, list[tuple]]:
    """The site tables' columns, indexes and constraints, by name."""
    return {
        "columns": normalised_columns(db, SITE_TABLES),
        "indexes": [tuple(r.values()) for r in rows(db, """
            SELECT tablename::text, indexname::text, indexdef FROM pg_indexes
            WHERE schemaname = current_schema() AND tablename = ANY(%(t)s) ORDER BY 1, 2""", t=SITE_TABLES)],
        "constraints": [tuple(r.values()) for r in rows(db, """
            SELECT conrelid::regclass::text, conname::text, pg_get_constraintdef(oid), condeferrable, condeferred
            FROM pg_constraint WHERE conrelid::regclass::text = ANY(%(t)s) ORDER BY 1, 2""", t=SITE_TABLES)],
    }


def catalogue_of(url: str) -> dict[str, list[tuple]]:
    with Database.connect(Secret(url)) as db:
        return catalogue(db)


def admissions(order: Order) -> int:
    return sum(item.quantity for item in order.items.all())


def assert_paid_and_valid(order: Order) -> list[Ticket]:
    """A completed order as the site sees it: valid for Django, paid, one valid ticket per admission
    of each item, every ticket consistent with its item and valid for Django."""
    order.full_clean()
    assert order.status == COMPLETED and order.paid_at is not None and order.sumup_transaction_code
    tickets = list(Ticket.objects.filter(order=order).select_related("order_item"))
    assert len(tickets) == admissions(order), order.order_number
    for item in order.items.all():
        assert sum(t.order_item_id == item.pk for t in tickets) == item.quantity, (order.order_number, item.pk)
    for ticket in tickets:
        ticket.full_clean()
        assert ticket.created_at is not None and ticket.status == Ticket.Status.VALID
        assert ticket.checked_in_at is None
        assert (ticket.event_id, ticket.ticket_type_id) == (order.event_id, ticket.order_item.ticket_type_id)
    return tickets


def mailed_to(smtp) -> set[str]:
    return {address for message in smtp.messages for address in message.rcpt_tos}


def started_sweeps(env: dict[str, str], n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-m", "payverify", "sweep"], env=env, cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n)]


# ---- the tables ----------------------------------------------------------------------------------

def test_django_makes_the_shared_site_schema(pg_url, django_templates):
    """BigAutoField migrations make exactly site-schema.sql's tables; AutoField differs only in integer ids and FKs."""
    if not SHARED_SITE_SCHEMA.exists():
        # As test_db_upgrade: CI sets PAYVERIFY_REQUIRE_SHARED_SCHEMA, and there it must never be skipped.
        if os.environ.get("PAYVERIFY_REQUIRE_SHARED_SCHEMA"):
            pytest.fail(f"{SHARED_SITE_SCHEMA} not found, and PAYVERIFY_REQUIRE_SHARED_SCHEMA is set")
        pytest.skip(f"{SHARED_SITE_SCHEMA} not found: the shared contract is not checked out beside the project")
    with scratch_database(pg_url, "pv_dj_shared") as url, Database.connect(Secret(url)) as db:
        with db.transaction() as tx:
            tx.script(SHARED_SITE_SCHEMA.read_text(encoding="utf-8"))
        shared = catalogue(db)
    big, small = catalogue_of(django_templates("BigAutoField")), catalogue_of(django_templates("AutoField"))

    assert {r[0] for r in shared["columns"]} == set(SITE_TABLES)  # the shared file really was loaded
    for part in ("columns", "indexes", "constraints"):
        assert big[part] == shared[part], part

    bigint = {(r[0], r[1]) for r in big["columns"] if r[2] == "bigint"}
    assert bigint == {(t, "id") for t in SITE_TABLES} | FOREIGN_KEYS
    as_integer = [(*r[:2], "integer", r[3], 32, *r[5:]) if (r[0], r[1]) in bigint else r for r in big["columns"]]
    assert small["columns"] == as_integer
    assert (small["indexes"], small["constraints"]) == (big["indexes"], big["constraints"])


# ---- payverify on Django's tables ----------------------------------------------------------------

@DIRECT_AND_THROUGH_PGBOUNCER
def test_sweep_settles_every_row_of_the_decision_table(site, db, smtp, run_payverify):
    """One sweep over every row of the decision table: each order ends as expected, only changed ones
    have a new updated_at, paid ones have exactly their tickets and mail, and every row written is valid."""
    lua = site.artist()
    tide = site.artist("The Northern Tide", oauth=True, token_expires_in=timedelta(minutes=-10))
    show, tide_show = site.event(lua), site.event(tide, "Tidal Nights")
    over = site.event(lua, "Summer Matinee", starts_in=timedelta(days=-2))
    standing, seated = site.ticket_type(show, "Standing", "12.50"), site.ticket_type(show, "Seated", "30.00")
    tide_general, over_general = site.ticket_type(tide_show, "General", "22.00"), site.ticket_type(over, "General")
    pending, failed = Order.Status.PENDING, Order.Status.FAILED
    cases = {  # scenario: (order, the status it must end in)
        "paid, came back": (site.order([(standing, 2), (seated, 1)]), COMPLETED),
        "paid, never came back": (site.order([(standing, 1)], status=pending), COMPLETED),
        "paid, artist's token refreshed first": (site.order([(tide_general, 3)]), COMPLETED),
        "declined, within the grace": (site.order([(standing, 1)], sumup_status="FAILED",
                                                  age=timedelta(minutes=10)), "pending_verification"),
        "declined, grace over": (site.order([(seated, 2)], sumup_status="FAILED", age=timedelta(minutes=50)),
                                 failed),
        "still paying": (site.order([(standing, 1)], status=pending, sumup_status="PENDING",
                                    age=timedelta(minutes=15)), pending),
        "abandoned over max age": (site.order([(standing, 4)], status=pending, sumup_status="PENDING",
                                              age=timedelta(hours=3)), "expired"),
        "expired at SumUp": (site.order([(standing, 1)], sumup_status="EXPIRED", age=timedelta(minutes=40)),
                             "expired"),
        "unknown to SumUp (404)": (site.order([(standing, 1)], sumup_status=None), "requires_manual_review"),
        "wrong amount": (site.order([(seated, 2)], sumup_amount="30.00"), "requires_manual_review"),
        "event already over": (site.order([(over_general, 2)]), "requires_manual_review"),
        "late payment of a failed order": (site.order([(seated, 1)], status=failed, age=timedelta(hours=3)),
                                           COMPLETED),
        "a status payverify does not know": (site.order([(standing, 1)], status="on_hold"), "on_hold"),
    }

    result = run_payverify("sweep")
    assert result.returncode == ExitStatus.OK, result.stderr
    assert result.stderr == ""

    for scenario, (before, want) in cases.items():
        after = Order.objects.get(pk=before.pk)
        assert after.status == want, scenario
        if want == COMPLETED:
            assert_paid_and_valid(after)
            assert after.email in mailed_to(smtp), scenario
        else:
            assert not Ticket.objects.filter(order=after).exists(), scenario
        if want != before.status:
            after.full_clean()
            assert after.updated_at > before.updated_at, scenario
        else:
            assert after.updated_at == before.updated_at, scenario
    late = cases["late payment of a failed order"][0]
    assert {"admin_alert_late_payment", "order_confirmation"} <= {
        r["kind"] for r in rows(db, "SELECT kind FROM payverify_outbox WHERE order_id = %(id)s", id=late.pk)}
    # The refreshed pair was stored in Django's artist row, and the row is still valid for Django.
    refreshed = Artist.objects.get(pk=tide.pk)
    refreshed.full_clean()
    assert refreshed.sumup_refresh_token != tide.sumup_refresh_token
    assert refreshed.sumup_token_expires_at > tide.sumup_token_expires_at
    paid = [order.pk for order, want in cases.values() if want == COMPLETED]
    assert_invariants(check_invariants(db, smtp, expected_paid=paid))


def test_check_settles_one_paid_order(site, smtp, run_payverify):
    """`payverify check ORDER` completes that one paid order, with its tickets and mail, valid for Django."""
    show = site.event(site.artist())
    standing, seated = site.ticket_type(show, "Standing", "12.50"), site.ticket_type(show, "Seated", "30.00")
    order = site.order([(standing, 1), (seated, 2)])
    other = site.order([(standing, 1)])

    result = run_payverify("check", order.order_number)
    assert result.returncode == ExitStatus.OK, result.stderr
    assert_paid_and_valid(Order.objects.get(pk=order.pk))
    assert mailed_to(smtp) == {order.email}
    untouched = Order.objects.get(pk=other.pk)
    assert (untouched.status, untouched.updated_at) == (other.status, other.updated_at)


def test_doctor_accepts_djangos_tables(site, run_payverify):
    """`payverify doctor` finds Django's tables match the contract and payverify's schema current."""
    site.artist("The Northern Tide", oauth=True)  # gives the token check an artist row to read
    result = run_payverify("doctor")
    checks = {}
    for line in result.stdout.splitlines():
        status, rest = line.split(None, 1)
        checks[rest.partition(": ")[0]] = status
    assert checks["site tables"] == "ok", result.stdout
    assert checks["payverify schema"] == "ok", result.stdout
    assert result.returncode == ExitStatus.OK, result.stdout


def test_overlapping_sweeps_issue_each_paid_orders_tickets_once(site, db, env, sumup, smtp):
    """3 overlapping sweeps over 30 paid orders: each ends with exactly its tickets, never twice, valid for Django."""
    show = site.event(site.artist())
    standing, seated = site.ticket_type(show, "Standing", "12.50"), site.ticket_type(show, "Seated", "30.00")
    orders = [site.order([(standing, 1 + i % 3), (seated, 1)] if i % 2 else [(standing, 1 + i % 3)])
              for i in range(30)]
    # Slow answers and two workers a run: each run alone would take over a second, so the three overlap.
    sumup.latency = 0.1
    procs = started_sweeps({**env, "PAYVERIFY_CONCURRENCY": "2"}, 3)
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == ExitStatus.OK, err

    assert sumup.max_in_flight > 2  # more than one run was asking SumUp at the same moment
    for order in orders:
        assert_paid_and_valid(Order.objects.get(pk=order.pk))
    assert Ticket.objects.count() == sum(admissions(o) for o in orders)
    assert_invariants(check_invariants(db, smtp, expected_paid=[o.pk for o in orders]))

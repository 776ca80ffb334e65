"""The database role: `payverify db grants` gives exactly what a run needs, and the role it sets up
(the suite's `env` connects as one) can change nothing else; doctor says when a user could do far more."""

from __future__ import annotations

import uuid

import pytest

from payverify.db import Database
from payverify.errors import PermissionDenied
from payverify.exitcodes import ExitStatus
from payverify.secret import Secret
from payverify_dev.seed import load_site_schema
from tests.cli_runner import invoke, one_line
from tests.helpers import rows, scalar, status_of, tickets_of

# Each is something payverify never does; the role must be refused every one.
FORBIDDEN = {
    "an order's total": "UPDATE orders_order SET total = 0",
    "an order's email": "UPDATE orders_order SET email = 'thief@example.com'",
    "an order's checkout": "UPDATE orders_order SET sumup_checkout_id = 'other'",
    "a new order": "INSERT INTO orders_order (order_number, email, first_name, last_name, total, currency, status, "
                   "created_at, updated_at, event_id) VALUES ('X', 'x@example.com', 'x', 'x', 1, 'EUR', 'completed', "
                   "now(), now(), 1)",
    "deleting orders": "DELETE FROM orders_order",
    "deleting order items": "DELETE FROM orders_orderitem",
    "deleting tickets": "DELETE FROM tickets_ticket",
    "voiding a ticket": "UPDATE tickets_ticket SET status = 'void'",
    "checking a ticket in": "UPDATE tickets_ticket SET checked_in_at = now()",
    "an artist's name": "UPDATE artists_artist SET name = 'x'",
    "an artist's merchant account": "UPDATE artists_artist SET sumup_merchant_code = 'MOTHER'",
    "deleting artists": "DELETE FROM artists_artist",
    "a price": "UPDATE events_tickettype SET price = 0",
    "an event": "UPDATE events_event SET starts_at = now()",
    "a column it does not read": "SELECT created_at FROM artists_artist",
    "an artist's email, which it never reads": "SELECT email FROM artists_artist",
    "deleting a fulfilment (the backstop against a second issue)": "DELETE FROM payverify_fulfilment",
    "rewriting a fulfilment": "UPDATE payverify_fulfilment SET tickets_issued = 0",
    "rewriting the audit": "UPDATE payverify_audit SET outcome = 'completed'",
    "forgetting a reported discrepancy": "DELETE FROM payverify_reconcile_reported",
    "emptying the audit": "TRUNCATE payverify_audit",
    "dropping its outbox": "DROP TABLE payverify_outbox",
    "altering its tables": "ALTER TABLE payverify_outbox ADD COLUMN extra integer",
    "its schema version": "UPDATE payverify_schema_version SET version = 99",
    "a new table": "CREATE TABLE public.payverify_extra (id integer)",
}


def refused(url: str, statement: str) -> bool:
    with Database.connect(Secret(url)) as db:
        try:
            with db.transaction() as tx:
                tx.script(statement)
        except PermissionDenied:
            return True
    return False


@pytest.mark.parametrize("what", FORBIDDEN)
def test_the_run_role_cannot_change_what_payverify_does_not(what, run_database_url):
    """The role `db grants` sets up is refused anything payverify does not do itself."""
    assert refused(run_database_url, FORBIDDEN[what]), f"the run role could change {what}"


def test_the_run_role_can_do_what_settling_needs(seed, run_database_url):
    """The control for the test above: the narrow rights are there (in a transaction rolled back)."""
    event = seed.event(seed.artist())
    order = seed.order([(seed.ticket_type(event, "Standing", "12.50"), 1)], event_id=event)
    with Database.connect(Secret(run_database_url)) as db, db.transaction() as tx:
        changed = tx.fetch_sql("UPDATE orders_order SET status = 'completed', paid_at = now(), updated_at = now(), "
                               "sumup_transaction_code = 'T' WHERE id = %(id)s RETURNING id", {"id": order.id})
        tx.fetch_sql("UPDATE artists_artist SET sumup_access_token = sumup_access_token RETURNING id")
        tx.fetch_sql("DELETE FROM payverify_audit RETURNING id")
        tx.script("ROLLBACK")
    assert changed == [{"id": order.id}]


def test_the_grants_name_only_the_columns_payverify_writes(database_url, run_role):
    """The applied output: UPDATE on exactly the settled columns and the token columns, INSERT on
    tickets only, and no table-wide right on any site table."""
    applied = run_role.grant(database_url)
    site_lines = [line for line in applied.splitlines() if line.startswith("GRANT")
                  and any(f'"{t}"' in line for t in ("orders_order", "artists_artist", "tickets_ticket",
                                                     "events_event", "events_tickettype", "orders_orderitem"))]
    updates = sorted(line.split(" ON ")[0] + " ON " + line.split(" ON ")[1].split(" TO ")[0]
                     for line in site_lines if line.startswith("GRANT UPDATE"))
    assert updates == [
        'GRANT UPDATE ("status", "paid_at", "sumup_transaction_code", "updated_at") ON "public"."orders_order"',
        'GRANT UPDATE ("sumup_access_token", "sumup_refresh_token", "sumup_token_expires_at") ON '
        '"public"."artists_artist"',
    ]
    assert [line for line in site_lines if line.startswith("GRANT INSERT")] == [
        f'GRANT INSERT ("checked_in_at", "code", "created_at", "event_id", "holder_name", "order_id", '
        f'"order_item_id", "status", "ticket_type_id") ON "public"."tickets_ticket" TO "{run_role.name}";']
    assert all(line.startswith(("GRANT SELECT (", "GRANT UPDATE (", "GRANT INSERT (")) for line in site_lines)
    assert "DELETE" not in "\n".join(site_lines)


def test_serial_ticket_ids_need_their_sequence_and_db_grants_gives_it(seed, db, database_url, run_role, run_payverify):
    """An older site's tickets_ticket.id is serial: nextval() is checked against payverify's role, so
    `db grants` grants the sequence; without that grant no ticket could be issued."""
    with db.transaction() as tx:
        tx.script("ALTER TABLE tickets_ticket ALTER COLUMN id DROP IDENTITY; "
                  "CREATE SEQUENCE tickets_ticket_serial OWNED BY tickets_ticket.id; "
                  "ALTER TABLE tickets_ticket ALTER COLUMN id SET DEFAULT nextval('tickets_ticket_serial')")
    applied = run_role.grant(database_url)
    assert f'GRANT USAGE ON SEQUENCE "public"."tickets_ticket_serial" TO "{run_role.name}";' in applied
    event = seed.event(seed.artist())
    tt = seed.ticket_type(event, "Standing", "12.50")
    paid = seed.order([(tt, 2)], event_id=event)
    assert run_payverify("sweep").returncode == 0
    assert status_of(db, paid.id) == "completed" and tickets_of(db, paid.id) == 2

    with db.transaction() as tx:
        tx.script(f"REVOKE USAGE ON SEQUENCE tickets_ticket_serial FROM {run_role.name}")
    blocked = seed.order([(tt, 1)], event_id=event)
    result = run_payverify("sweep")
    assert status_of(db, blocked.id) == "pending_verification" and tickets_of(db, blocked.id) == 0
    assert "permission denied for sequence tickets_ticket_serial" in result.stderr


@pytest.mark.parametrize("role", ["public", "PUBLIC", "pg_monitor", "r" * 64, "two\nlines", ""])
def test_db_grants_refuses_a_role_name_it_cannot_name_exactly(role, database_url):
    result = invoke("db", "grants", role, env={"PAYVERIFY_DATABASE_URL": database_url})
    assert result.returncode == ExitStatus.USAGE
    assert "Invalid value for 'ROLE'" in one_line(result)


def test_db_grants_before_db_upgrade_says_to_upgrade(empty_database_url):
    with Database.connect(Secret(empty_database_url)) as db:
        load_site_schema(db)
    result = invoke("db", "grants", "payverify", env={"PAYVERIFY_DATABASE_URL": empty_database_url})
    assert result.returncode == ExitStatus.SCHEMA
    assert "payverify db upgrade" in one_line(result)


def test_db_grants_says_when_the_role_does_not_exist_yet(database_url):
    result = invoke("db", "grants", "payverify_not_yet", env={"PAYVERIFY_DATABASE_URL": database_url})
    assert result.returncode == ExitStatus.OK
    assert ('-- role "payverify_not_yet" does not exist yet: CREATE ROLE "payverify_not_yet" LOGIN PASSWORD'
            in result.stdout)


def test_db_upgrade_as_the_run_role_says_it_needs_the_owner(empty_database_url, run_role):
    """Creating payverify's tables as the run role: exit 3, one line saying who can; once the owner has
    upgraded, the same command as the run role has nothing to do and succeeds."""
    with Database.connect(Secret(empty_database_url)) as db:
        load_site_schema(db)
    as_role = run_role.url(empty_database_url)
    result = invoke("db", "upgrade", env={"PAYVERIFY_DATABASE_URL": as_role})
    assert result.returncode == ExitStatus.CONFIG
    line = one_line(result)
    assert "needs the rights of their owner" in line and "permission denied for schema public" in line
    assert scalar_of(empty_database_url, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'payverify%%'") == 0

    owner = invoke("db", "upgrade", env={"PAYVERIFY_DATABASE_URL": empty_database_url})
    assert owner.returncode == ExitStatus.OK and "apply `payverify db grants ROLE` again" in owner.stdout
    run_role.grant(empty_database_url)
    again = invoke("db", "upgrade", env={"PAYVERIFY_DATABASE_URL": as_role})
    assert again.returncode == ExitStatus.OK and "is current" in again.stdout


def scalar_of(url: str, sql: str):
    with Database.connect(Secret(url)) as db:
        return scalar(db, sql)


def rights_line(result) -> str:
    return next(line for line in result.stdout.splitlines() if "database rights" in line)


def test_doctor_on_the_run_role_finds_every_right_and_nothing_more(seed, run_payverify):
    seed.artist()  # the simulator knows the platform key
    result = run_payverify("doctor")
    assert rights_line(result).startswith("ok    database rights: user pv_run_"), result.stdout


def test_doctor_warns_about_a_superuser(seed, database_url, run_payverify):
    seed.artist()
    result = run_payverify("doctor", extra_env={"PAYVERIFY_DATABASE_URL": database_url})
    line = rights_line(result)
    assert line.startswith("warn  database rights:") and "is a superuser" in line and "db grants" in line
    assert result.returncode == ExitStatus.OK, result.stdout  # a warning is not a failure


@pytest.mark.parametrize(("extra", "said"), [
    ("GRANT DELETE ON orders_order, tickets_ticket TO {role}",
     "has table-wide rights on the site's tables (DELETE orders_order, DELETE tickets_ticket)"),
    ("GRANT TRUNCATE, UPDATE ON orders_order TO {role}",
     "has table-wide rights on the site's tables (TRUNCATE orders_order, UPDATE orders_order)"),
    ("ALTER TABLE orders_order OWNER TO {role}", "owns the site's tables (orders_order): it can drop or alter them"),
])
def test_doctor_warns_about_rights_on_the_site_tables_beyond_what_payverify_needs(extra, said, seed, db, run_role,
                                                                                  run_payverify):
    seed.artist()
    with db.transaction() as tx:
        tx.script(extra.format(role=run_role.name))
    result = run_payverify("doctor")
    assert rights_line(result) == (f"warn  database rights: user {run_role.name} {said}; payverify needs much "
                                   "less: give it its own role with `payverify db grants ROLE`")
    assert result.returncode == ExitStatus.OK


def test_doctor_fails_when_a_right_is_missing(seed, db, run_role, run_payverify):
    """Say, after an upgrade added a table and nobody applied the grants again."""
    seed.artist()
    with db.transaction() as tx:
        tx.script(f"REVOKE UPDATE (sumup_refresh_token) ON artists_artist FROM {run_role.name}; "
                  f"REVOKE DELETE ON payverify_runs FROM {run_role.name}")
    result = run_payverify("doctor")
    assert rights_line(result) == (f"FAIL  database rights: user {run_role.name} lacks UPDATE on "
                                   "artists_artist.sumup_refresh_token, DELETE on payverify_runs: apply "
                                   "`payverify db grants ROLE` as the owner")
    assert result.returncode == ExitStatus.CONFIG


def test_the_run_role_is_told_of_a_ticket_column_it_has_no_right_on(db, run_payverify):
    """A NOT NULL ticket column added after the grants: the role has no right on it, yet the contract
    check still sees it (pg_catalog, not information_schema) and refuses before settling anything."""
    with db.transaction() as tx:
        tx.script("ALTER TABLE tickets_ticket ADD COLUMN seat varchar(10) NOT NULL")
    result = run_payverify("sweep")
    assert result.returncode == ExitStatus.SCHEMA
    assert "site column tickets_ticket.seat is NOT NULL without a default" in one_line(result)


def test_doctor_warns_about_a_noinherit_member_of_the_owners_role(seed, db, database_url, env, run_payverify):
    """NOINHERIT keeps the owner's rights out of reach by default, but SET ROLE gets them: a warning."""
    from tests.conftest import RunRole

    seed.artist()
    member = RunRole(f"pv_ni_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex)
    owner = f"{member.name}_site"
    with db.transaction() as tx:
        tx.script(f"CREATE ROLE {member.name} LOGIN NOINHERIT PASSWORD '{member.password}'; "
                  f"CREATE ROLE {owner} NOLOGIN; ALTER TABLE orders_order OWNER TO {owner}; "
                  f"GRANT {owner} TO {member.name}")
    try:
        member.grant(database_url)
        result = run_payverify("doctor", extra_env={"PAYVERIFY_DATABASE_URL": member.url(database_url)})
        assert rights_line(result).startswith(f"warn  database rights: user {member.name} owns the site's tables "
                                              "(orders_order)"), result.stdout
    finally:
        with db.transaction() as tx:
            tx.script(f"ALTER TABLE orders_order OWNER TO CURRENT_USER; DROP OWNED BY {member.name}, {owner}; "
                      f"DROP ROLE {member.name}; DROP ROLE {owner}")


def test_db_grants_covers_every_table_of_payverify(db):
    """A migration that adds a table must say what a run may do with it (grants.OWN_RIGHTS)."""
    from payverify.db.grants import OWN_RIGHTS

    tables = {r["tablename"] for r in rows(db, "SELECT tablename::text FROM pg_tables "
                                               "WHERE schemaname = current_schema() AND tablename LIKE 'payverify%%'")}
    assert tables == set(OWN_RIGHTS)


def test_a_hand_made_sequence_default_gets_its_grant(seed, db, database_url, run_role, run_payverify):
    """tickets_ticket.id DEFAULT nextval('ticket_ids') with a sequence no column owns (a restored dump,
    a hand-made table): found through the default, granted, and tickets are issued."""
    with db.transaction() as tx:
        tx.script("ALTER TABLE tickets_ticket ALTER COLUMN id DROP IDENTITY; CREATE SEQUENCE ticket_ids; "
                  "ALTER TABLE tickets_ticket ALTER COLUMN id SET DEFAULT nextval('ticket_ids')")
    applied = run_role.grant(database_url)
    assert f'GRANT USAGE ON SEQUENCE "public"."ticket_ids" TO "{run_role.name}";' in applied
    event = seed.event(seed.artist())
    paid = seed.order([(seed.ticket_type(event, "Standing", "12.50"), 2)], event_id=event)
    assert run_payverify("sweep").returncode == 0
    assert status_of(db, paid.id) == "completed" and tickets_of(db, paid.id) == 2


def test_identity_ids_need_no_sequence_grant(database_url, run_role):
    """Django's identity columns: INSERT alone takes their ids, so no sequence of the site is named."""
    applied = run_role.grant(database_url)
    assert "tickets_ticket_id_seq" not in applied


def test_db_grants_refuses_security_invoker_views(empty_database_url):
    """A site view with security_invoker checks its base tables against payverify's role, which
    `db grants` does not name: exit 5 naming the view, rather than grants that cannot work."""
    with Database.connect(Secret(empty_database_url)) as db:
        load_site_schema(db)
        with db.transaction() as tx:
            tx.script("CREATE SCHEMA adapted; "
                      "CREATE VIEW adapted.tickets_ticket WITH (security_invoker = on) AS "
                      "SELECT * FROM public.tickets_ticket; "
                      + "".join(f"CREATE VIEW adapted.{t} AS SELECT * FROM public.{t}; "
                                for t in ("artists_artist", "events_event", "events_tickettype", "orders_order",
                                          "orders_orderitem")))
    site = {"PAYVERIFY_DATABASE_URL": empty_database_url, "PAYVERIFY_SITE_SCHEMA": "adapted"}
    assert invoke("db", "upgrade", env=site).returncode == ExitStatus.OK
    result = invoke("db", "grants", "payverify", env=site)
    assert result.returncode == ExitStatus.SCHEMA
    assert "the site's view tickets_ticket has security_invoker set" in one_line(result)


def test_doctor_on_a_user_that_cannot_read_payverify_tables_says_rights(seed, db, run_role, run_payverify):
    """No SELECT on payverify_schema_version: the schema line fails with the refused right (exit 3,
    the rights' status, not 5) and the rights check names what is missing."""
    seed.artist()
    with db.transaction() as tx:
        tx.script(f"REVOKE SELECT ON payverify_schema_version FROM {run_role.name}")
    result = run_payverify("doctor")
    assert result.returncode == ExitStatus.CONFIG, result.stdout
    assert "permission denied for table payverify_schema_version" in result.stdout
    assert rights_line(result).startswith(f"FAIL  database rights: user {run_role.name} lacks SELECT on "
                                          "payverify_schema_version")

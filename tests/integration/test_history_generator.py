"""payverify_dev/history.py, the scale benchmark's history: small, but shaped as the big one is, and a
real sweep on it settles exactly the due orders."""

from __future__ import annotations

import pytest

from payverify.exitcodes import ExitStatus
from payverify.mail.kinds import MAIL_TYPES
from payverify_dev.history import ARTIST_NAMES, EVENTS, STATUS_MIX, build_history
from tests.helpers import rows, scalar

ORDERS = ROWS = 2000
DUE = 5


@pytest.fixture
def history(db, sumup):
    return build_history(db, orders=ORDERS, payverify_rows=ROWS, due=DUE, sumup=sumup)


def status_counts(db) -> dict[str, int]:
    return {r["status"]: r["n"] for r in rows(db, "SELECT status, count(*) AS n FROM orders_order GROUP BY status")}


def test_catalogue_orders_and_the_status_mix(db, history):
    assert scalar(db, "SELECT count(*) FROM artists_artist") == len(ARTIST_NAMES)
    assert scalar(db, "SELECT count(*) FROM events_event") == EVENTS
    assert scalar(db, "SELECT count(*) FROM events_tickettype") == 2 * EVENTS
    counts = status_counts(db)
    assert counts.pop("pending_verification") == DUE
    assert sum(counts.values()) == ORDERS
    for status, share in STATUS_MIX:  # 2,000 draws: within about four standard deviations
        assert abs(counts[status] / ORDERS - share) < 0.03, (status, counts)
    assert scalar(db, "SELECT count(*) FROM orders_order WHERE order_number !~ '^JE-[0-9A-F]{8}$'") == 0
    assert scalar(db, "SELECT count(*) FROM orders_order WHERE status <> 'pending_verification' "
                      "AND email !~ '^[a-z.]+[0-9]+@example[.]com$'") == 0
    items = scalar(db, "SELECT count(*) FROM orders_orderitem WHERE order_id IN "
                       "(SELECT id FROM orders_order WHERE status <> 'pending_verification')")
    assert ORDERS <= items <= 2 * ORDERS


def test_times_totals_and_references_are_consistent(db, history):
    """created <= paid <= updated, paid exactly when paid, nothing in the last day; each total the sum
    of its items; every reference resolves (a superuser loads without the foreign-key triggers)."""
    historical = "FROM orders_order o WHERE o.status <> 'pending_verification'"
    assert scalar(db, f"SELECT count(*) {historical} AND NOT (o.created_at <= coalesce(o.paid_at, o.created_at) "
                      "AND coalesce(o.paid_at, o.created_at) <= o.updated_at "
                      "AND o.updated_at <= now() - interval '1 day')") == 0
    assert scalar(db, f"SELECT count(*) {historical} AND (o.paid_at IS NOT NULL) "
                      "<> (o.status IN ('completed', 'refunded'))") == 0
    assert scalar(db, f"SELECT count(*) {historical} AND o.created_at < now() - interval '3 years 1 day'") == 0
    assert scalar(db, f"SELECT count(*) {historical} AND o.total <> (SELECT sum(i.quantity * i.unit_price) "
                      "FROM orders_orderitem i WHERE i.order_id = o.id)") == 0
    assert scalar(db, f"SELECT count(*) {historical} AND o.created_at >= (SELECT e.starts_at FROM events_event e "
                      "WHERE e.id = o.event_id)") == 0
    orphans = """
        SELECT (SELECT count(*) FROM orders_order o LEFT JOIN events_event e ON e.id = o.event_id WHERE e.id IS NULL)
             + (SELECT count(*) FROM events_event e LEFT JOIN artists_artist a ON a.id = e.artist_id WHERE a.id IS NULL)
             + (SELECT count(*) FROM orders_orderitem i LEFT JOIN orders_order o ON o.id = i.order_id
                WHERE o.id IS NULL)
             + (SELECT count(*) FROM orders_orderitem i JOIN events_tickettype t ON t.id = i.ticket_type_id
                JOIN orders_order o ON o.id = i.order_id WHERE t.event_id <> o.event_id)
             + (SELECT count(*) FROM tickets_ticket t JOIN orders_orderitem i ON i.id = t.order_item_id
                JOIN orders_order o ON o.id = t.order_id
                WHERE i.order_id <> t.order_id OR i.ticket_type_id <> t.ticket_type_id OR o.event_id <> t.event_id)
             + (SELECT count(*) FROM tickets_ticket t LEFT JOIN orders_orderitem i ON i.id = t.order_item_id
                WHERE i.id IS NULL)"""
    assert scalar(db, orphans) == 0


def test_every_paid_order_has_its_tickets_and_a_fulfilment(db, history):
    assert scalar(db, """
        SELECT count(*) FROM orders_order o
        LEFT JOIN payverify_fulfilment f ON f.order_id = o.id
        WHERE o.status IN ('completed', 'refunded')
          AND (f.order_id IS NULL
               OR f.tickets_issued <> (SELECT sum(quantity) FROM orders_orderitem i WHERE i.order_id = o.id)
               OR f.tickets_issued <> (SELECT count(*) FROM tickets_ticket t WHERE t.order_id = o.id)
               OR f.checkout_id <> o.sumup_checkout_id OR f.transaction_code <> o.sumup_transaction_code)""") == 0
    assert scalar(db, "SELECT count(*) FROM tickets_ticket t JOIN orders_order o ON o.id = t.order_id "
                      "WHERE o.status NOT IN ('completed', 'refunded')") == 0
    assert scalar(db, "SELECT count(*) FROM payverify_fulfilment") == scalar(
        db, "SELECT count(*) FROM orders_order WHERE status IN ('completed', 'refunded')")
    tickets, paid = (scalar(db, "SELECT count(*) FROM tickets_ticket"),
                     scalar(db, "SELECT count(*) FROM orders_order WHERE status IN ('completed', 'refunded')"))
    assert 1.35 < tickets / paid < 1.65  # about 1.5 admissions per order
    assert scalar(db, "SELECT count(*) FROM tickets_ticket WHERE length(code) <> 32") == 0


def test_payverify_tables_as_after_long_use(db, history):
    for table in ("payverify_audit", "payverify_outbox", "payverify_runs", "payverify_order_state"):
        assert scalar(db, f"SELECT count(*) FROM {table}") == ROWS, table
    assert scalar(db, "SELECT count(*) FROM payverify_order_state WHERE lease_owner IS NOT NULL "
                      "OR lease_expires_at IS NOT NULL OR consecutive_errors <> 0 "
                      "OR last_checked_at > now() - interval '1 day'") == 0
    assert scalar(db, "SELECT sum(runs) FROM payverify_run_counts") == ROWS  # as the trigger would count
    outbox = rows(db, "SELECT kind, status, count(*) AS n FROM payverify_outbox GROUP BY kind, status")
    assert {r["kind"] for r in outbox} <= MAIL_TYPES
    assert {r["status"] for r in outbox} == {"sent", "failed", "cancelled"}  # nothing left to send
    assert sum(r["n"] for r in outbox if r["status"] == "sent") > 0.95 * ROWS
    assert scalar(db, "SELECT count(*) FROM payverify_runs WHERE started_at > now()") == 0
    assert scalar(db, "SELECT count(*) FROM payverify_reconcile_cursor") > 0
    assert scalar(db, "SELECT count(*) FROM payverify_reconcile_reported") > 0


def test_a_sweep_settles_the_due_orders_and_nothing_historical(db, history, run_payverify):
    before = status_counts(db)
    audit_before = scalar(db, "SELECT max(id) FROM payverify_audit")
    result = run_payverify("sweep")
    assert result.returncode == ExitStatus.OK, result.stderr
    after = status_counts(db)
    assert after.pop("completed") == before.pop("completed") + DUE
    assert before.pop("pending_verification") == DUE and "pending_verification" not in after
    assert after == before
    due = sorted(order.id for order in history.due)
    asked = rows(db, "SELECT order_id, outcome FROM payverify_audit WHERE id > %(id)s ORDER BY order_id",
                 id=audit_before)
    assert asked == [{"order_id": order_id, "outcome": "completed"} for order_id in due]
    assert scalar(db, "SELECT count(*) FROM tickets_ticket WHERE order_id = ANY(%(ids)s)", ids=due) == sum(
        order.admissions for order in history.due)


def test_an_empty_site_has_the_catalogue_alone(db, sumup):
    empty = build_history(db, orders=0, payverify_rows=0, due=2, sumup=sumup)
    assert scalar(db, "SELECT count(*) FROM events_event") == EVENTS
    assert status_counts(db) == {"pending_verification": 2}
    assert len(empty.due) == 2
    for table in ("payverify_audit", "payverify_outbox", "payverify_runs", "payverify_order_state"):
        assert scalar(db, f"SELECT count(*) FROM {table}") == 0, table

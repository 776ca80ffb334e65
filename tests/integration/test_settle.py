"""The settle step's guards, in-process against a real database."""

from __future__ import annotations

from datetime import timedelta

import pytest

from payverify.orders.settle import SUPERSEDED
from payverify.orders.verify import Verifier
from payverify.sumup.client import SumUpClient
from tests.helpers import scalar


@pytest.fixture
def verifier(settings, db, sumup):
    from payverify.orders.settle import Attempt

    client = SumUpClient(sumup.url)
    yield Verifier(settings, db, client, Attempt(run_id="test", host="h", command="sweep", lease_owner="h:1:test"))
    client.close()


@pytest.fixture
def paid_order(seed):
    artist = seed.artist()
    event = seed.event(artist)
    return seed.order([(seed.ticket_type(event), 2)], event_id=event)


def test_order_changed_meanwhile_is_left_alone(verifier, db, paid_order, monkeypatch):
    """If the site changes the order between our read and our settle, the guarded UPDATE touches no row
    and nothing is written: no tickets, no mail; the attempt is audited as superseded."""
    original_ask = verifier.ask

    def ask_then_site_cancels(order):
        answer = original_ask(order)
        with db.transaction() as tx:
            tx.script(f"UPDATE orders_order SET status = 'cancelled' WHERE id = {order.id}")
        return answer

    monkeypatch.setattr(verifier, "ask", ask_then_site_cancels)
    result = verifier.verify(paid_order.id)
    assert result.outcome == SUPERSEDED
    assert scalar(db, f"SELECT status FROM orders_order WHERE id = {paid_order.id}") == "cancelled"
    assert scalar(db, "SELECT count(*) FROM tickets_ticket") == 0
    assert scalar(db, "SELECT count(*) FROM payverify_outbox") == 0
    assert scalar(db, "SELECT count(*) FROM payverify_fulfilment") == 0
    assert scalar(db, f"SELECT outcome FROM payverify_audit WHERE order_id = {paid_order.id}") == SUPERSEDED


def test_fulfilment_row_is_the_backstop_against_double_issuance(verifier, db, paid_order):
    """Even if the order were put back to pending after its tickets were issued, the fulfilment
    row's primary key refuses a second issuance; the order goes to manual review with one alert
    (instead of being retried every run) and no second ticket or confirmation is written."""
    assert verifier.verify(paid_order.id).outcome == "completed"
    with db.transaction() as tx:
        tx.script(f"UPDATE orders_order SET status = 'pending_verification' WHERE id = {paid_order.id}")
    result = verifier.verify(paid_order.id)
    assert result.outcome == "requires_manual_review"
    assert "already issued" in result.decision.reason
    assert scalar(db, f"SELECT count(*) FROM tickets_ticket WHERE order_id = {paid_order.id}") == 2
    assert scalar(db, f"SELECT status FROM orders_order WHERE id = {paid_order.id}") == "requires_manual_review"
    assert scalar(db, "SELECT count(*) FROM payverify_outbox WHERE kind = 'order_confirmation'") == 1
    assert scalar(db, "SELECT count(*) FROM payverify_outbox WHERE kind = 'admin_alert_amount_mismatch'") == 1


def test_every_attempt_is_audited_without_secrets(verifier, db, paid_order, settings):
    """One audit row per attempt with run id, host, checkout id, HTTP status, SumUp status, outcome, duration."""
    verifier.verify(paid_order.id)
    with db.transaction() as tx:
        row = tx.all("recent_audit", order_id=paid_order.id, limit=5)[0]
    assert row["run_id"] == "test" and row["host"] == "h" and row["command"] == "sweep"
    assert row["checkout_id"] == paid_order.checkout_id
    assert row["http_status"] == 200 and row["sumup_status"] == "PAID" and row["outcome"] == "completed"
    assert row["duration_ms"] >= 0
    assert settings.sumup_api_key.reveal() not in repr(row)


def test_holder_name_and_codes(verifier, db, seed):
    """Tickets carry the order's name as holder and distinct unguessable codes (>= 128 bits)."""
    artist = seed.artist()
    event = seed.event(artist)
    order = seed.order([(seed.ticket_type(event), 3)], event_id=event, first_name="Zoë", last_name="O'Neil")
    verifier.verify(order.id)
    assert scalar(db, "SELECT string_agg(DISTINCT holder_name, ',') FROM tickets_ticket") == "Zoë O'Neil"
    assert scalar(db, "SELECT count(DISTINCT code) FROM tickets_ticket") == 3
    assert scalar(db, "SELECT min(length(code)) FROM tickets_ticket") >= 32


def test_expired_token_order_is_not_expired_by_the_clock(verifier, db, seed, sumup):
    """An old order whose SumUp answer is unknown stays as it was (never expired on the clock alone)."""
    from payverify_dev.sumup_server import Scripted

    artist = seed.artist()
    event = seed.event(artist)
    order = seed.order([(seed.ticket_type(event), 1)], event_id=event, age=timedelta(hours=10))
    sumup.script(order.checkout_id, Scripted(status=200, body="<html>gateway</html>"))
    assert verifier.verify(order.id).outcome == "unchanged"
    assert scalar(db, f"SELECT status FROM orders_order WHERE id = {order.id}") == "pending_verification"

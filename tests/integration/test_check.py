"""`payverify check ORDER` end to end: a real process, real Postgres, the SumUp simulator."""

from __future__ import annotations

import json

import pytest

from payverify.exitcodes import ExitStatus
from payverify_dev.sumup_server import Scripted
from tests.helpers import scalar


def status_of(db, order_id):
    return scalar(db, f"SELECT status FROM orders_order WHERE id = {int(order_id)}")


def footprint(db, order_id):
    """Everything payverify could write about an order."""
    oid = int(order_id)
    return {
        "status": status_of(db, oid),
        "paid_at": scalar(db, f"SELECT paid_at FROM orders_order WHERE id = {oid}"),
        "tickets": scalar(db, f"SELECT count(*) FROM tickets_ticket WHERE order_id = {oid}"),
        "audit": scalar(db, f"SELECT count(*) FROM payverify_audit WHERE order_id = {oid}"),
        "outbox": scalar(db, f"SELECT count(*) FROM payverify_outbox WHERE order_id = {oid}"),
        "fulfilment": scalar(db, f"SELECT count(*) FROM payverify_fulfilment WHERE order_id = {oid}"),
    }


def assert_one_clean_error_line(result):
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    return lines[0]


@pytest.fixture
def catalogue(seed):
    artist = seed.artist()
    event = seed.event(artist, "Harbour Lights")
    return {"event": event, "standing": seed.ticket_type(event, "Standing", "12.50"),
            "seated": seed.ticket_type(event, "Seated", "30.00")}


@pytest.fixture
def paid_order(seed, catalogue):
    return seed.order([(catalogue["standing"], 2), (catalogue["seated"], 1)], event_id=catalogue["event"])


def test_check_by_order_number_settles_a_paid_order(paid_order, db, run_payverify):
    """By order number: the report names the order, SumUp's PAID, the decision and the tickets; the order completes."""
    result = run_payverify("check", paid_order.order_number)
    assert result.returncode == ExitStatus.OK, result.stderr
    out = result.stdout
    assert paid_order.order_number in out
    assert "PAID" in out
    assert "Decision: completed" in out
    assert "3 tickets issued" in out
    assert result.stderr == ""
    after = footprint(db, paid_order.id)
    assert after["status"] == "completed" and after["tickets"] == 3 and after["fulfilment"] == 1


def test_check_by_numeric_id_settles_a_paid_order(paid_order, db, run_payverify):
    """The order's numeric id finds the same order as its number."""
    result = run_payverify("check", str(paid_order.id))
    assert result.returncode == ExitStatus.OK, result.stderr
    assert paid_order.order_number in result.stdout and f"id {paid_order.id}" in result.stdout
    assert "3 tickets issued" in result.stdout
    assert status_of(db, paid_order.id) == "completed"


def test_check_dry_run_changes_nothing(paid_order, db, run_payverify):
    """--dry-run shows the decision but writes no status, audit, outbox, fulfilment or ticket row."""
    before = footprint(db, paid_order.id)
    result = run_payverify("check", paid_order.order_number, "--dry-run")
    assert result.returncode == ExitStatus.OK, result.stderr
    assert "Decision: completed" in result.stdout and "dry run" in result.stdout
    assert footprint(db, paid_order.id) == before
    assert before["status"] == "pending_verification" and before["tickets"] == 0
    assert scalar(db, "SELECT count(*) FROM tickets_ticket") == 0
    assert scalar(db, "SELECT count(*) FROM payverify_outbox") == 0


def test_check_json_output(paid_order, db, run_payverify):
    """--json prints one JSON document with order/sumup/decision/done/attempts/mail and the right values."""
    result = run_payverify("check", paid_order.order_number, "--json")
    assert result.returncode == ExitStatus.OK, result.stderr
    doc = json.loads(result.stdout)
    assert {"order", "sumup", "decision", "done", "attempts", "mail"} <= doc.keys()
    assert doc["order"]["id"] == paid_order.id
    assert doc["order"]["order_number"] == paid_order.order_number
    assert doc["order"]["checkout_id"] == paid_order.checkout_id
    assert doc["order"]["status"] == "pending_verification"  # as read, before settling
    assert doc["sumup"]["http_status"] == 200
    assert doc["sumup"]["checkout"]["status"] == "PAID"
    assert doc["decision"]["outcome"] == "completed"
    assert doc["done"]["applied"] is True and doc["done"]["tickets_issued"] == 3
    assert doc["dry_run"] is False
    assert len(doc["attempts"]) == 1 and doc["attempts"][0]["outcome"] == "completed"
    assert [m["kind"] for m in doc["mail"]] == ["order_confirmation"]
    assert status_of(db, paid_order.id) == "completed"


def test_check_json_dry_run_has_no_done(paid_order, db, run_payverify):
    """--json --dry-run: done is null, dry_run true, no attempts recorded."""
    result = run_payverify("check", paid_order.order_number, "--json", "--dry-run")
    assert result.returncode == ExitStatus.OK, result.stderr
    doc = json.loads(result.stdout)
    assert doc["done"] is None and doc["dry_run"] is True
    assert doc["attempts"] == [] and doc["mail"] == []
    assert status_of(db, paid_order.id) == "pending_verification"


def test_unknown_order_exits_order_not_found(seed, catalogue, run_payverify):
    """An order that does not exist: exit 6, one stderr line naming it, no traceback."""
    result = run_payverify("check", "JE-NOSUCH1")
    assert result.returncode == ExitStatus.ORDER_NOT_FOUND == 6
    line = assert_one_clean_error_line(result)
    assert "JE-NOSUCH1" in line
    assert result.stdout == ""


def test_unknown_numeric_id_exits_order_not_found(seed, catalogue, run_payverify):
    """A numeric id with no order (also one too large for bigint) is not found, not an internal error."""
    for ref in ("987654321", "99999999999999999999999"):
        result = run_payverify("check", ref)
        assert result.returncode == ExitStatus.ORDER_NOT_FOUND, result.stderr
        assert ref in assert_one_clean_error_line(result)


def test_sumup_down_exits_7_and_changes_nothing(paid_order, db, sumup, run_payverify):
    """Three 503s for the checkout: exit 7 (SUMUP_UNAVAILABLE) and the order is as it was."""
    sumup.script(paid_order.checkout_id, *[Scripted(status=503)] * 3)
    result = run_payverify("check", paid_order.order_number)
    assert result.returncode == ExitStatus.SUMUP_UNAVAILABLE == 7, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "Decision: unchanged" in result.stdout
    after = footprint(db, paid_order.id)
    assert after["status"] == "pending_verification"
    assert after["tickets"] == 0 and after["outbox"] == 0 and after["fulfilment"] == 0


def test_check_on_completed_order_changes_nothing(paid_order, db, sumup, run_payverify):
    """A second check of a completed order reports it and issues no second set of tickets or mail."""
    assert run_payverify("check", paid_order.order_number).returncode == ExitStatus.OK
    first = footprint(db, paid_order.id)
    assert first["status"] == "completed" and first["tickets"] == 3 and first["outbox"] == 1
    result = run_payverify("check", paid_order.order_number)
    assert result.returncode == ExitStatus.OK, result.stderr
    assert "completed" in result.stdout
    assert "Done:     nothing changed" in result.stdout
    assert "tickets issued" not in result.stdout
    after = footprint(db, paid_order.id)
    assert after["status"] == "completed" and after["tickets"] == 3 and after["outbox"] == 1
    assert after["fulfilment"] == 1


def test_order_without_checkout_says_so(seed, catalogue, db, sumup, run_payverify):
    """An order with no checkout id: says it has no checkout, asks SumUp nothing, exit 0, order unchanged."""
    order = seed.order([(catalogue["standing"], 1)], event_id=catalogue["event"], status="pending",
                       checkout_id=None)
    sumup.reset_counters()
    result = run_payverify("check", order.order_number)
    assert result.returncode == ExitStatus.OK, result.stderr
    assert "Checkout: (none)" in result.stdout
    assert "no SumUp checkout" in result.stdout
    assert sumup.get_count() == 0
    after = footprint(db, order.id)
    assert after["status"] == "pending" and after["tickets"] == 0


def test_check_exits_7_when_sumup_refuses_the_credentials(seed, db, sumup, run_payverify):
    """A 401 (no definitive answer) is not 'done': check exits 7 and the order stays as it was."""
    artist = seed.artist()
    event = seed.event(artist)
    order = seed.order([(seed.ticket_type(event), 1)], event_id=event)
    sumup.script(order.checkout_id, Scripted(status=401))
    result = run_payverify("check", order.order_number)
    assert result.returncode == ExitStatus.SUMUP_UNAVAILABLE
    assert "401" in result.stdout
    assert status_of(db, order.id) == "pending_verification"


def test_check_sends_only_the_orders_own_mail(seed, catalogue, db, smtp, run_payverify):
    """`check` answers a person on a terminal: it sends the order's mail that is due, not the whole
    outbox (another order's waiting confirmation is the next sweep's), within a bounded time."""
    event, standing = catalogue["event"], catalogue["standing"]
    other = seed.order([(standing, 1)], event_id=event, email="other@example.com")
    assert run_payverify("sweep", extra_env={"PAYVERIFY_SMTP_URL": "smtp://127.0.0.1:1"}).returncode == 0
    mine = seed.order([(standing, 1)], event_id=event, email="mine@example.com")
    result = run_payverify("check", mine.order_number)
    assert result.returncode == 0, result.stderr
    assert [m.rcpt_tos for m in smtp.messages] == [("mine@example.com",)]
    assert scalar(db, "SELECT status FROM payverify_outbox WHERE order_id = %(id)s", id=other.id) == "pending"
    assert run_payverify("sweep").returncode == 0
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == ["mine@example.com", "other@example.com"]

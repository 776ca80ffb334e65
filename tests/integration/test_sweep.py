"""`payverify sweep` end to end: a real process, real Postgres, the SumUp simulator."""

from __future__ import annotations

from datetime import timedelta

import pytest

from payverify.exitcodes import ExitStatus
from tests.helpers import rows, scalar


def order_row(db, order_id):
    return rows(db, "SELECT status, paid_at, sumup_transaction_code FROM orders_order WHERE id = %(id)s",
                id=order_id)[0]


count = scalar


@pytest.fixture
def catalogue(seed):
    artist = seed.artist()
    event = seed.event(artist)
    return {"artist": artist, "event": event, "standing": seed.ticket_type(event, "Standing", "12.50"),
            "seated": seed.ticket_type(event, "Seated", "30.00")}


def test_successful_payment_issues_tickets_once(seed, catalogue, db, run_payverify):
    """A paid order: completed, one ticket per admission, paid_at and transaction code set, mail queued."""
    order = seed.order([(catalogue["standing"], 2), (catalogue["seated"], 1)], event_id=catalogue["event"])
    result = run_payverify("sweep")
    assert result.returncode == ExitStatus.OK, result.stderr
    assert result.stdout == "" and result.stderr == ""  # silent under cron
    row = order_row(db, order.id)
    assert row["status"] == "completed"
    assert row["paid_at"] is not None and row["sumup_transaction_code"]
    assert count(db, f"SELECT count(*) FROM tickets_ticket WHERE order_id = {order.id}") == 3
    assert count(db, "SELECT count(DISTINCT code) FROM tickets_ticket") == 3
    assert count(db, "SELECT min(length(code)) FROM tickets_ticket") >= 22  # >= 128 bits base64url
    assert count(db, f"SELECT count(*) FROM payverify_outbox WHERE order_id = {order.id} "
                     "AND kind = 'order_confirmation'") == 1
    again = run_payverify("sweep")
    assert again.returncode == ExitStatus.OK
    assert count(db, f"SELECT count(*) FROM tickets_ticket WHERE order_id = {order.id}") == 3


def test_declined_card_fails_after_grace(seed, catalogue, db, run_payverify):
    """FAILED: left alone within the grace, failed with a payment-failed mail after it."""
    young = seed.order([(catalogue["standing"], 1)], event_id=catalogue["event"], sumup_status="FAILED",
                       age=timedelta(minutes=5))
    old = seed.order([(catalogue["standing"], 1)], event_id=catalogue["event"], sumup_status="FAILED",
                     age=timedelta(minutes=45))
    assert run_payverify("sweep").returncode == 0
    assert order_row(db, young.id)["status"] == "pending_verification"
    assert order_row(db, old.id)["status"] == "failed"
    assert count(db, f"SELECT count(*) FROM payverify_outbox WHERE order_id = {old.id} "
                     "AND kind = 'payment_failed'") == 1
    assert count(db, "SELECT count(*) FROM tickets_ticket") == 0


def test_expired_order_after_max_age(seed, catalogue, db, run_payverify):
    """PENDING beyond 2 h: expired; PENDING younger: untouched."""
    old = seed.order([(catalogue["standing"], 1)], event_id=catalogue["event"], status="pending",
                     sumup_status="PENDING", age=timedelta(hours=2, minutes=5))
    young = seed.order([(catalogue["standing"], 1)], event_id=catalogue["event"], status="pending",
                       sumup_status="PENDING", age=timedelta(minutes=20))
    assert run_payverify("sweep").returncode == 0
    assert order_row(db, old.id)["status"] == "expired"
    assert order_row(db, young.id)["status"] == "pending"


def test_amount_mismatch_goes_to_review_with_one_alert(seed, catalogue, db, run_payverify):
    """SumUp says PAID for less than the total: requires_manual_review, no tickets, one alert."""
    order = seed.order([(catalogue["seated"], 2)], event_id=catalogue["event"], sumup_amount="6.00")
    assert run_payverify("sweep").returncode == 0
    assert order_row(db, order.id)["status"] == "requires_manual_review"
    assert count(db, "SELECT count(*) FROM tickets_ticket") == 0
    assert count(db, f"SELECT count(*) FROM payverify_outbox WHERE order_id = {order.id} "
                     "AND kind = 'admin_alert_amount_mismatch' AND recipients = ARRAY['alerts@coderra.je']") == 1


def test_unknown_answers_change_nothing_and_exit_zero(seed, catalogue, db, sumup, run_payverify):
    """A 503 for one order leaves it as it was; the run still exits 0 (retried next run)."""
    from payverify_dev.sumup_server import Scripted

    down = seed.order([(catalogue["standing"], 1)], event_id=catalogue["event"])
    up = seed.order([(catalogue["standing"], 1)], event_id=catalogue["event"])
    sumup.script(down.checkout_id, *[Scripted(status=503)] * 3)
    result = run_payverify("sweep")
    assert result.returncode == ExitStatus.OK, result.stderr
    assert order_row(db, down.id)["status"] == "pending_verification"
    assert order_row(db, up.id)["status"] == "completed"
    assert count(db, f"SELECT count(*) FROM payverify_audit WHERE order_id = {down.id} "
                     "AND outcome = 'unchanged' AND http_status = 503") == 1


def test_sumup_down_for_every_order_exits_nonzero(seed, catalogue, db, sumup, run_payverify):
    """When SumUp answers no order at all, the run says so on stderr and exits SUMUP_UNAVAILABLE."""
    from payverify_dev.sumup_server import Scripted

    order = seed.order([(catalogue["standing"], 1)], event_id=catalogue["event"])
    sumup.set_global_fault(Scripted(status=502))
    result = run_payverify("sweep")
    assert result.returncode == ExitStatus.SUMUP_UNAVAILABLE
    assert "SumUp did not answer" in result.stderr and "Traceback" not in result.stderr
    assert order_row(db, order.id)["status"] == "pending_verification"


def test_dry_run_changes_nothing(seed, catalogue, db, run_payverify):
    """--dry-run prints what it would do and writes nothing."""
    order = seed.order([(catalogue["standing"], 1)], event_id=catalogue["event"])
    result = run_payverify("sweep", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert order.order_number in result.stdout and "completed" in result.stdout
    assert order_row(db, order.id)["status"] == "pending_verification"
    assert count(db, "SELECT count(*) FROM payverify_audit") == 0
    assert count(db, "SELECT count(*) FROM payverify_outbox") == 0


def test_limit_bounds_the_run(seed, catalogue, db, run_payverify):
    """--limit N verifies at most N orders."""
    for _ in range(3):
        seed.order([(catalogue["standing"], 1)], event_id=catalogue["event"])
    assert run_payverify("sweep", "--limit", "2").returncode == 0
    assert count(db, "SELECT count(*) FROM orders_order WHERE status = 'completed'") == 2


def test_late_payment_rescued_with_alert(seed, catalogue, db, run_payverify):
    """An expired order that SumUp now says is PAID: completed, tickets, mail and a late-payment alert."""
    order = seed.order([(catalogue["standing"], 2)], event_id=catalogue["event"], status="expired",
                       age=timedelta(hours=3))
    assert run_payverify("sweep").returncode == 0
    assert order_row(db, order.id)["status"] == "completed"
    assert count(db, f"SELECT count(*) FROM tickets_ticket WHERE order_id = {order.id}") == 2
    kinds = count(db, f"SELECT string_agg(kind, ',' ORDER BY kind) FROM payverify_outbox WHERE order_id = {order.id}")
    assert kinds == "admin_alert_late_payment,order_confirmation"


def test_since_replays_old_failed_orders(seed, catalogue, db, run_payverify):
    """`--since 48h` rescues a failed order older than the 24 h window; a plain sweep does not."""
    order = seed.order([(catalogue["standing"], 1)], event_id=catalogue["event"], status="failed",
                       age=timedelta(hours=30))
    assert run_payverify("sweep").returncode == 0
    assert order_row(db, order.id)["status"] == "failed"
    assert run_payverify("sweep", "--since", "48h").returncode == 0
    assert order_row(db, order.id)["status"] == "completed"


def test_one_poisoned_order_does_not_stop_the_run(seed, catalogue, db, sumup, run_payverify):
    """An order whose reply breaks something unexpected is audited as an error and moved to the back;
    the orders after it are still settled and the run exits 0."""
    from payverify_dev.sumup_server import Scripted

    poisoned = seed.order([(catalogue["standing"], 1)], event_id=catalogue["event"], age=timedelta(hours=1))
    healthy = seed.order([(catalogue["standing"], 1)], event_id=catalogue["event"])
    sumup.script(poisoned.checkout_id, Scripted(status=200, body='{"status": "PAID", "amount": 1e40}'))
    result = run_payverify("sweep")
    assert result.returncode == 0, result.stderr
    assert order_row(db, poisoned.id)["status"] == "pending_verification"
    assert order_row(db, healthy.id)["status"] == "completed"


def test_order_deleted_between_select_and_verify_is_skipped(seed, catalogue, db, run_payverify):
    """An order that vanished after selection is an error for that order only (audited), not the run."""
    order = seed.order([(catalogue["standing"], 1)], event_id=catalogue["event"])
    other = seed.order([(catalogue["standing"], 1)], event_id=catalogue["event"])
    with db.transaction() as tx:
        # SECURITY DEFINER: the site deletes the order (payverify's role could not).
        tx.fetch_sql("CREATE FUNCTION pv_test_vanish() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN "
                     "DELETE FROM orders_orderitem WHERE order_id = NEW.order_id; "
                     "DELETE FROM orders_order WHERE id = NEW.order_id; RETURN NEW; END $$; "
                     "CREATE TRIGGER pv_test_vanish AFTER UPDATE OF lease_owner ON payverify_order_state "
                     f"FOR EACH ROW WHEN (NEW.order_id = {order.id} AND NEW.lease_owner IS NOT NULL) "
                     "EXECUTE FUNCTION pv_test_vanish(); SELECT 1")
    result = run_payverify("sweep")
    assert result.returncode == 0, result.stderr
    assert order_row(db, other.id)["status"] == "completed"
    assert count(db, f"SELECT count(*) FROM payverify_audit WHERE order_id = {order.id} AND outcome = 'error'") == 1

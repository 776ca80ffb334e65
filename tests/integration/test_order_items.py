"""The tickets come from the order's items: `payverify sweep` (a real process, a real Postgres, the
SumUp simulator, a real SMTP server) issues them only when the items add up to what was paid and
every quantity is within bounds."""

from __future__ import annotations

from decimal import Decimal

from payverify.exitcodes import ExitStatus
from tests.helpers import scalar, status_of, tickets_of


def _set_total(db, order_id: int, total: str) -> None:
    # The site's bug (or an item edited while the customer paid): the total no longer matches the items.
    with db.transaction() as tx:
        tx.fetch_sql("UPDATE orders_order SET total = %(total)s WHERE id = %(id)s RETURNING id",
                     {"id": order_id, "total": Decimal(total)})


def _review_alert_text(smtp, order_number: str) -> str:
    (alert,) = [m for m in smtp.messages if f"Order {order_number} needs manual review" in m.parsed()["Subject"]]
    return alert.parsed().get_body(preferencelist=("plain",)).get_content()


def test_items_that_do_not_add_up_get_no_tickets(seed, db, smtp, run_payverify):
    """Total 10.00, one item of 5 x 10.00, SumUp PAID 10.00 (amount, currency, merchant, reference
    all matching the order): requires_manual_review, no ticket, no confirmation, and the staff alert
    says what the items add up to (50.00) and what was paid (10.00)."""
    artist = seed.artist()
    event = seed.event(artist)
    order = seed.order([(seed.ticket_type(event, "Standing", "10.00"), 5)], event_id=event, sumup_amount="10.00")
    _set_total(db, order.id, "10.00")

    result = run_payverify("sweep")
    assert result.returncode == ExitStatus.OK, result.stderr
    assert status_of(db, order.id) == "requires_manual_review"
    assert tickets_of(db, order.id) == 0
    assert scalar(db, "SELECT count(*) FROM payverify_fulfilment") == 0
    assert scalar(db, "SELECT count(*) FROM payverify_outbox WHERE kind = 'order_confirmation'") == 0
    text = _review_alert_text(smtp, order.order_number)
    assert "the items add up to 50.00 GBP, not the order's total of 10.00 GBP (SumUp was paid 10.00 GBP)" in text
    assert "5 x Standing at 10.00 GBP = 50.00 GBP" in text
    assert "The items add up to 50.00 GBP; the order's total is 10.00 GBP." in text
    # A later run leaves it to the person the alert went to.
    assert run_payverify("sweep").returncode == ExitStatus.OK
    assert tickets_of(db, order.id) == 0 and len([m for m in smtp.messages if order.order_number in
                                                   m.parsed()["Subject"]]) == 1


def test_a_late_payment_whose_items_do_not_add_up_gets_no_tickets(seed, db, smtp, run_payverify):
    """The same on an expired order in the rescue window (the "late payment" column): review, no tickets."""
    artist = seed.artist()
    event = seed.event(artist)
    order = seed.order([(seed.ticket_type(event, "Standing", "10.00"), 5)], event_id=event, status="expired",
                       sumup_amount="10.00")
    _set_total(db, order.id, "10.00")
    assert run_payverify("sweep").returncode == ExitStatus.OK
    assert status_of(db, order.id) == "requires_manual_review"
    assert tickets_of(db, order.id) == 0
    assert "SumUp was paid 10.00 GBP" in _review_alert_text(smtp, order.order_number)


def test_a_quantity_out_of_bounds_gets_no_tickets(seed, db, smtp, run_payverify):
    """101 free admissions beside a paid one add up to what was paid, but 101 is over the 100 one item
    may hold: review, no tickets, and the alert names the item's quantity."""
    artist = seed.artist()
    event = seed.event(artist)
    order = seed.order([(seed.ticket_type(event, "Standing", "12.50"), 1),
                        (seed.ticket_type(event, "Guest list", "0.00"), 101)], event_id=event)
    assert run_payverify("sweep").returncode == ExitStatus.OK
    assert status_of(db, order.id) == "requires_manual_review"
    assert tickets_of(db, order.id) == 0
    assert "has a quantity of 101, outside 1..100" in _review_alert_text(smtp, order.order_number)

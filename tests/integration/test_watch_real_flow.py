"""`payverify watch` in the site's real flow: the order exists `pending`, with its checkout, while the
customer is at SumUp; the site sets `pending_verification` (and `updated_at`) when they come back, and
SumUp may still say PENDING for a moment. The return starts the fast schedule, whatever watch or
anyone else knew of the order before."""

from __future__ import annotations

import time
from datetime import timedelta

from payverify_dev.sumup_server import checkout_body
from tests.helpers import rows, scalar, status_of
from tests.processes import after_a_pass, eventually, stop

RETURN_WITHIN = 8.0  # seconds from SumUp saying PAID to completed: the schedule asks every second at first


def customer_returns(db, order_id: int) -> None:
    """What the site does when the browser comes back from SumUp."""
    rows(db, "UPDATE orders_order SET status = 'pending_verification', updated_at = now() WHERE id = %(id)s "
             "RETURNING id", id=order_id)


def paid(sumup, order) -> None:
    sumup.update_checkout(order.checkout_id, **checkout_body(order.checkout_id, order.order_number, order.total,
                                                             "GBP", order.merchant_code, "PAID"))


def test_a_return_during_the_payment_is_asked_on_the_fast_schedule(start_watch, seed, shop, db, sumup):
    """Created pending; the watch leaves it alone while the customer is at SumUp (neither its polls nor
    its housekeeping ask it); they come back 11 s after the watch started, SumUp says PAID 1.5 s after
    that: completed within seconds (the old schedule, counted from when the pending order was first
    seen, had its next ask 30 s after that)."""
    event, ticket_type = shop
    order = seed.order([(ticket_type, 1)], event_id=event, status="pending", sumup_status="PENDING",
                       age=timedelta(seconds=1))
    started = time.monotonic()
    proc = start_watch(PAYVERIFY_CONCURRENCY="1")
    # The watch polls for returned orders before it starts its first housekeeping pass, and with one
    # worker an ask that poll queued runs before the pass: once the pass has ended, both had their chance.
    after_a_pass(db, at_least=1)
    time.sleep(max(0.0, started + 11 - time.monotonic()))
    assert sumup.get_count(order.checkout_id) == 0  # a customer still at SumUp is not asked on the fast path
    customer_returns(db, order.id)
    eventually(lambda: sumup.get_count(order.checkout_id) >= 1)  # asked at once: PENDING
    time.sleep(1.5)
    paid(sumup, order)
    took = eventually(lambda: status_of(db, order.id) == "completed", within=30)
    assert took < RETURN_WITHIN
    assert stop(proc)[0] == 0


def test_a_return_that_a_cron_sweep_found_pending_still_gets_the_fast_schedule(start_watch, seed, shop, db,
                                                                             sumup, run_payverify):
    """A cron sweep asked right after the return (PENDING): the watch still asks on the return's
    schedule, not a minute later at its housekeeping."""
    event, ticket_type = shop
    order = seed.order([(ticket_type, 1)], event_id=event, status="pending", sumup_status="PENDING",
                       age=timedelta(seconds=20))
    customer_returns(db, order.id)
    assert run_payverify("sweep").returncode == 0
    assert scalar(db, "SELECT last_sumup_status FROM payverify_order_state WHERE order_id = %(id)s",
                  id=order.id) == "PENDING"
    proc = start_watch()
    eventually(lambda: sumup.get_count(order.checkout_id) >= 2)  # the sweep's ask, then the watch's
    paid(sumup, order)
    took = eventually(lambda: status_of(db, order.id) == "completed", within=30)
    assert took < RETURN_WITHIN
    assert stop(proc)[0] == 0


def test_a_customer_who_paid_and_never_came_back_is_found_by_the_housekeeping(start_watch, seed, shop, db):
    """A pending order over five minutes old whose checkout is PAID: settled by the watch's housekeeping
    (which runs at start, then every minute), with no return to notice."""
    event, ticket_type = shop
    order = seed.order([(ticket_type, 1)], event_id=event, status="pending", age=timedelta(minutes=6))
    proc = start_watch()
    eventually(lambda: status_of(db, order.id) == "completed", within=30)
    assert stop(proc)[0] == 0

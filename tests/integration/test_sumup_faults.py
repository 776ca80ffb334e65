"""SumUp misbehaving: bodies that are HTML, truncated or of unexpected types change no order."""

from __future__ import annotations

from datetime import timedelta

import pytest

from payverify_dev.sumup_server import Scripted, checkout_body
from tests.helpers import scalar


def paid_body(order, **changes):
    body = checkout_body(order.checkout_id, order.order_number, order.total, order.currency,
                         order.merchant_code, "PAID")
    body.update(changes)
    return body


BAD_BODIES = {
    "html with 200": lambda o: "<html><body>Bad gateway</body></html>",
    "empty 200": lambda o: "",
    "truncated json": lambda o: f'{{"id": "{o.checkout_id}", "status": "PAID", "amount": 2',
    "json array": lambda o: "[]",
    "amount as string": lambda o: paid_body(o, amount=str(o.total)),
    "amount as bool": lambda o: paid_body(o, amount=True),
    "status missing": lambda o: {k: v for k, v in paid_body(o).items() if k != "status"},
    "status not a string": lambda o: paid_body(o, status=1),
    "amount missing": lambda o: {k: v for k, v in paid_body(o).items() if k != "amount"},
    "transactions not a list": lambda o: paid_body(o, transactions={"status": "SUCCESSFUL"}),
    "unknown status": lambda o: paid_body(o, status="AUTHORIZED"),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_body_not_understood_changes_nothing(case, seed, db, sumup, run_payverify):
    """A reply payverify does not understand leaves an old order exactly as it was (never expired,
    never paid), audited as unchanged, and the run exits 0."""
    artist = seed.artist()
    event = seed.event(artist)
    order = seed.order([(seed.ticket_type(event), 2)], event_id=event, age=timedelta(hours=5))
    sumup.script(order.checkout_id, Scripted(status=200, body=BAD_BODIES[case](order)))
    result = run_payverify("sweep")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert scalar(db, f"SELECT status FROM orders_order WHERE id = {order.id}") == "pending_verification"
    assert scalar(db, "SELECT count(*) FROM tickets_ticket") == 0
    # Nothing about this order (the hourly stuck-orders digest may list it: that is its job).
    assert scalar(db, f"SELECT count(*) FROM payverify_outbox WHERE order_id = {order.id}") == 0
    assert scalar(db, f"SELECT outcome FROM payverify_audit WHERE order_id = {order.id}") == "unchanged"


@pytest.mark.parametrize("fault", [Scripted(reset=True), Scripted(truncate=True), Scripted(status=429),
                                   Scripted(status=500), Scripted(delay=5)])
def test_transport_faults_change_nothing(fault, seed, db, sumup, run_payverify):
    """Resets, truncated replies, 429, 5xx and hangs (retried, then given up) change no order."""
    artist = seed.artist()
    event = seed.event(artist)
    order = seed.order([(seed.ticket_type(event), 1)], event_id=event, age=timedelta(hours=5))
    other = seed.order([(seed.ticket_type(event), 1)], event_id=event)
    sumup.script(order.checkout_id, *[fault] * 3)
    result = run_payverify("sweep", extra_env={"PAYVERIFY_SUMUP_READ_TIMEOUT": "0.5"})
    assert result.returncode == 0, result.stderr
    assert scalar(db, f"SELECT status FROM orders_order WHERE id = {order.id}") == "pending_verification"
    assert scalar(db, f"SELECT status FROM orders_order WHERE id = {other.id}") == "completed"


def test_429_storm_with_retry_after_changes_nothing_and_ends_in_budget(seed, db, sumup, run_payverify):
    """Every request answered 429 with Retry-After: the whole run backs off together, changes no order,
    exits within its time budget, and the orders are settled by the next run once SumUp recovers."""
    import time

    artist = seed.artist()
    event = seed.event(artist)
    orders = [seed.order([(seed.ticket_type(event), 1)], event_id=event) for _ in range(6)]
    sumup.set_global_fault(Scripted(status=429, headers={"Retry-After": "1"}))
    started = time.monotonic()
    result = run_payverify("sweep", extra_env={"PAYVERIFY_TIME_BUDGET": "3", "PAYVERIFY_CONCURRENCY": "3"})
    elapsed = time.monotonic() - started
    assert result.returncode in (0, 7), result.stderr
    assert "Traceback" not in result.stderr
    assert elapsed < 3 + 15  # the budget plus one order's worth of retries, never an open-ended storm
    assert scalar(db, "SELECT count(*) FROM orders_order WHERE status = 'pending_verification'") == 6
    assert scalar(db, "SELECT count(*) FROM tickets_ticket") == 0
    sumup.set_global_fault(None)
    with db.transaction() as tx:  # the storm's checks were seconds ago; a later run finds them due
        tx.fetch_sql("UPDATE payverify_order_state SET last_checked_at = now() - interval '10 minutes' RETURNING 1")
    assert run_payverify("sweep").returncode == 0
    assert scalar(db, "SELECT count(*) FROM orders_order WHERE status = 'completed'") == len(orders)

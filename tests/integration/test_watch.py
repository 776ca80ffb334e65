"""`payverify watch` end to end: a real process against a real Postgres, the SumUp simulator and the
SMTP capture. It notices returning orders, asks again while SumUp says PENDING, settles and mails,
wakes on NOTIFY, survives its database connections being terminated, and stops on SIGTERM with exit 0."""

from __future__ import annotations

import time

from payverify.db import Database
from payverify.secret import Secret
from payverify_dev.sumup_server import checkout_body
from tests.conftest import DIRECT_AND_THROUGH_PGBOUNCER
from tests.helpers import scalar, status_of
from tests.processes import eventually, stop


@DIRECT_AND_THROUGH_PGBOUNCER
def test_watch_settles_and_mails_a_returning_order_then_stops_on_sigterm(start_watch, seed, shop, db, smtp):
    proc = start_watch()
    event, ticket_type = shop
    order = seed.order([(ticket_type, 2)], event_id=event, email="quick@example.com")

    def settled() -> bool:
        assert proc.poll() is None, f"watch exited {proc.returncode}: {proc.communicate()[1]}"
        return status_of(db, order.id) == "completed"

    eventually(settled)
    eventually(lambda: any("quick@example.com" in m.rcpt_tos for m in smtp.messages))
    assert scalar(db, "SELECT count(*) FROM tickets_ticket WHERE order_id = %(id)s", id=order.id) == 2
    code, err = stop(proc)
    assert code == 0, err
    assert "Traceback" not in err


def test_watch_asks_again_while_sumup_says_pending(start_watch, seed, shop, db, sumup):
    """A redirect can beat the payment: PENDING at first, PAID a moment later, settled on the re-ask
    (long before the ordinary schedule, a minute away at the earliest)."""
    event, ticket_type = shop
    order = seed.order([(ticket_type, 1)], event_id=event, sumup_status="PENDING")
    proc = start_watch()
    eventually(lambda: sumup.get_count(order.checkout_id) >= 1)
    assert status_of(db, order.id) == "pending_verification"
    sumup.update_checkout(order.checkout_id, **checkout_body(order.checkout_id, order.order_number, order.total,
                                                             "GBP", order.merchant_code, "PAID"))
    took = eventually(lambda: status_of(db, order.id) == "completed")
    assert took < 10
    assert sumup.get_count(order.checkout_id) >= 2
    assert stop(proc)[0] == 0


def test_notify_wakes_the_watch_before_its_next_poll(start_watch, seed, shop, db, database_url):
    """With a 30-second poll, an order is still seen within seconds when the site sends NOTIFY."""
    proc = start_watch(PAYVERIFY_WATCH_INTERVAL="30")
    time.sleep(2)  # the first poll has run and found nothing
    event, ticket_type = shop
    order = seed.order([(ticket_type, 1)], event_id=event)
    with Database.connect(Secret(database_url)) as site, site.transaction() as tx:
        tx.fetch_sql("SELECT pg_notify('payverify', %(id)s)", {"id": str(order.id)})
    took = eventually(lambda: status_of(db, order.id) == "completed", within=20)
    assert took < 15
    assert stop(proc)[0] == 0


def test_watch_carries_on_after_its_database_connections_are_terminated(start_watch, seed, shop, db):
    proc = start_watch()
    event, ticket_type = shop
    first = seed.order([(ticket_type, 1)], event_id=event)
    eventually(lambda: status_of(db, first.id) == "completed")
    killed = scalar(db, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                        "AND application_name LIKE %(app)s", app="payverify%")
    assert killed >= 1
    second = seed.order([(ticket_type, 1)], event_id=event)
    eventually(lambda: status_of(db, second.id) == "completed", within=45)
    assert proc.poll() is None  # still running
    code, err = stop(proc)
    assert code == 0, err
    assert "database" in err and "Traceback" not in err

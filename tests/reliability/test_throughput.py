"""Throughput mechanics: concurrency, the shared rate limit, batches, fair scheduling, the time budget.
(Speed itself is measured by benchmarks/, not here.)"""

from __future__ import annotations

from datetime import timedelta

from tests.helpers import max_in_any_second, scalar


def shop(seed):
    artist = seed.artist()
    event = seed.event(artist)
    return event, seed.ticket_type(event)


def test_requests_run_concurrently_up_to_the_setting(seed, sumup, run_payverify):
    """With PAYVERIFY_CONCURRENCY=4 and a slow SumUp, 4 requests are in flight at once, never 5."""
    event, tt = shop(seed)
    for _ in range(16):
        seed.order([(tt, 1)], event_id=event)
    sumup.latency = 0.3
    result = run_payverify("sweep", extra_env={"PAYVERIFY_CONCURRENCY": "4", "PAYVERIFY_SUMUP_RATE": "0"})
    assert result.returncode == 0, result.stderr
    assert sumup.max_in_flight == 4
    assert sumup.get_count() == 16


def test_global_rate_limit_across_workers(seed, sumup, run_payverify):
    """8 workers share one limit: at 5 requests/s no one-second window at SumUp holds more than 6."""
    event, tt = shop(seed)
    for _ in range(15):
        seed.order([(tt, 1)], event_id=event)
    result = run_payverify("sweep", extra_env={"PAYVERIFY_CONCURRENCY": "8", "PAYVERIFY_SUMUP_RATE": "5"})
    assert result.returncode == 0, result.stderr
    times = [r.timestamp for r in sumup.requests if r.checkout_id]
    assert len(times) == 15
    assert max_in_any_second(times) <= 6


def test_backlog_larger_than_a_batch_is_drained_in_one_run(seed, sumup, db, run_payverify):
    """450 due orders (more than two batches) are all settled by one run, each asked about once."""
    event, tt = shop(seed)
    for _ in range(450):
        seed.order([(tt, 1)], event_id=event, status="pending", sumup_status="PENDING")
    assert run_payverify("sweep", extra_env={"PAYVERIFY_SMTP_URL": "smtp://127.0.0.1:1",
                                             "PAYVERIFY_SUMUP_RATE": "0"}).returncode == 0
    assert sumup.get_count() == 450
    assert scalar(db, "SELECT count(DISTINCT order_id) FROM payverify_audit") == 450


def test_aging_orders_are_checked_less_often_fresh_ones_every_run(seed, sumup, db, run_payverify):
    """A PENDING order 3 h old checked 10 minutes ago is not due; one checked 30 minutes ago is; a fresh
    order checked a minute ago is due again (customers are waiting)."""
    event, tt = shop(seed)
    aged = {"status": "pending", "sumup_status": "PENDING", "age": timedelta(hours=1, minutes=50)}
    old_recent = seed.order([(tt, 1)], event_id=event, **aged)
    old_stale = seed.order([(tt, 1)], event_id=event, **aged)
    fresh = seed.order([(tt, 1)], event_id=event, sumup_status="PENDING", age=timedelta(minutes=10))
    assert run_payverify("sweep").returncode == 0
    with db.transaction() as tx:
        tx.fetch_sql("UPDATE payverify_order_state SET last_checked_at = now() - interval '10 minutes' "
                     "WHERE order_id = %(a)s; UPDATE payverify_order_state SET last_checked_at = now() - "
                     "interval '30 minutes' WHERE order_id = %(b)s; UPDATE payverify_order_state SET "
                     "last_checked_at = now() - interval '1 minute' WHERE order_id = %(c)s; SELECT 1",
                     {"a": old_recent.id, "b": old_stale.id, "c": fresh.id})
    sumup.reset_counters()
    assert run_payverify("sweep").returncode == 0
    assert sumup.get_count(old_recent.checkout_id) == 0
    assert sumup.get_count(old_stale.checkout_id) == 1
    assert sumup.get_count(fresh.checkout_id) == 1


def test_longest_waiting_goes_first(seed, sumup, db, run_payverify):
    """With --limit 1, the order whose last check is oldest is verified, not the newest."""
    event, tt = shop(seed)
    newer = seed.order([(tt, 1)], event_id=event, age=timedelta(minutes=2))
    older = seed.order([(tt, 1)], event_id=event, age=timedelta(minutes=20))
    assert run_payverify("sweep", "--limit", "1").returncode == 0
    assert sumup.get_count(older.checkout_id) == 1 and sumup.get_count(newer.checkout_id) == 0


def test_time_budget_stops_new_work(seed, sumup, db, run_payverify):
    """Past PAYVERIFY_TIME_BUDGET no new order is started; the rest are left as they were for the next run."""
    event, tt = shop(seed)
    for _ in range(30):
        seed.order([(tt, 1)], event_id=event)
    sumup.latency = 0.4
    result = run_payverify("sweep", extra_env={"PAYVERIFY_TIME_BUDGET": "1", "PAYVERIFY_CONCURRENCY": "2"})
    assert result.returncode == 0, result.stderr
    done = scalar(db, "SELECT count(*) FROM orders_order WHERE status = 'completed'")
    assert 2 <= done <= 10
    assert scalar(db, "SELECT count(*) FROM orders_order WHERE status = 'pending_verification'") == 30 - done

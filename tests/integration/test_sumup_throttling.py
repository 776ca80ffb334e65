"""SumUp throttling and slow replies never hold a run: a long Retry-After ends the run's SumUp work,
a shorter one is waited only within the run's time budget, a trickling reply is cut at its request's
deadline, and SIGTERM wakes a run paused by a 429. Real `payverify` processes against the simulator."""

from __future__ import annotations

import json
import time

from payverify_dev.sumup_server import FakeSumUp, Scripted
from tests.helpers import rows, scalar, status_of, tickets_of
from tests.processes import eventually, timed_stop


def served_429(sumup: FakeSumUp) -> bool:
    return any(r.status == 429 for r in sumup.requests)


def make_due_again(db) -> None:
    """The throttled run checked the orders seconds ago; the next cron tick (minutes later) finds them due."""
    with db.transaction() as tx:
        tx.fetch_sql("UPDATE payverify_order_state SET last_checked_at = now() - interval '10 minutes' RETURNING 1")


def last_run(db) -> dict:
    return rows(db, "SELECT exit_status, sumup_errors FROM payverify_runs ORDER BY id DESC LIMIT 1")[0]


def test_a_long_retry_after_ends_the_runs_sumup_work_and_the_next_run_settles_everything(
        seed, db, sumup, run_payverify):
    """One checkout answers 429 with Retry-After: 3600 among 20 paid orders. The run does not wait an
    hour: it ends at once, the orders it did not get to stay as they were, counted as http_429, and the
    next run (SumUp recovered) settles every one of them, each with its tickets exactly once."""
    event = seed.event(seed.artist())
    ticket_type = seed.ticket_type(event)
    throttled = seed.order([(ticket_type, 2)], event_id=event)
    others = [seed.order([(ticket_type, 1 + i % 3)], event_id=event) for i in range(20)]
    sumup.script(throttled.checkout_id, Scripted(status=429, headers={"Retry-After": "3600"}))
    started = time.monotonic()
    first = run_payverify("sweep", extra_env={"PAYVERIFY_CONCURRENCY": "4"}, timeout=180)
    elapsed = time.monotonic() - started
    assert first.returncode in (0, 7), first.stderr  # 7 when the 429 came before any other answer
    assert "Traceback" not in first.stderr
    assert elapsed < 60, f"the throttled run took {elapsed:.0f} s (budget 240 s)"
    assert status_of(db, throttled.id) == "pending_verification" and tickets_of(db, throttled.id) == 0
    left = [o for o in others if status_of(db, o.id) != "completed"]
    assert all(status_of(db, o.id) == "pending_verification" and tickets_of(db, o.id) == 0 for o in left)
    errors = last_run(db)["sumup_errors"]
    assert errors.get("http_429") == 1 + len(left), errors  # the 429 itself and every order not asked
    assert sumup.get_count(throttled.checkout_id) == 1  # never asked again in that run

    make_due_again(db)
    second = run_payverify("sweep")
    assert second.returncode == 0, second.stderr
    for order in [throttled, *others]:
        assert status_of(db, order.id) == "completed"
        assert tickets_of(db, order.id) == order.admissions
    assert scalar(db, "SELECT count(*) FROM payverify_fulfilment") == 21


def test_a_retry_after_longer_than_the_time_budget_ends_the_run_within_it(seed, db, sumup, run_payverify):
    """Every request answered 429 with Retry-After: 30 (within the cap) and a 5 s time budget: the pause
    is waited only until the budget ends, then nothing more is sent; the run ends well before the 30 s
    are up (budget + 15 s, for a loaded machine) and no order changes."""
    event = seed.event(seed.artist())
    ticket_type = seed.ticket_type(event)
    orders = [seed.order([(ticket_type, 1)], event_id=event) for _ in range(10)]
    sumup.set_global_fault(Scripted(status=429, headers={"Retry-After": "30"}))
    started = time.monotonic()
    result = run_payverify("sweep", extra_env={"PAYVERIFY_TIME_BUDGET": "5", "PAYVERIFY_CONCURRENCY": "3"},
                           timeout=180)
    elapsed = time.monotonic() - started
    assert result.returncode in (0, 7), result.stderr
    assert "Traceback" not in result.stderr
    # Waiting out the whole Retry-After would take 30 s from the first 429.
    assert elapsed < 5 + 15, f"the run took {elapsed:.0f} s with a 5 s budget"
    assert all(status_of(db, o.id) == "pending_verification" for o in orders)
    assert scalar(db, "SELECT count(*) FROM tickets_ticket") == 0


def test_a_trickling_sumup_cannot_hold_a_sweep_past_its_budget(seed, db, sumup, run_payverify):
    """SumUp (or a proxy) sends every reply a byte a second: each request ends at connect + read
    timeout (2 + 3 s here), no order changes, and the run ends within its 5 s budget + 30 s. A request
    takes the whole budget, so only the first round (one per worker) is sent; a run ignoring its budget
    would ask all 20 orders, two at a time, 5 s each: 50 s."""
    event = seed.event(seed.artist())
    ticket_type = seed.ticket_type(event)
    orders = [seed.order([(ticket_type, 1)], event_id=event) for _ in range(20)]
    sumup.set_global_fault(Scripted(trickle=1.0))
    started = time.monotonic()
    result = run_payverify("sweep", extra_env={"PAYVERIFY_TIME_BUDGET": "5", "PAYVERIFY_CONCURRENCY": "2",
                                               "PAYVERIFY_SUMUP_READ_TIMEOUT": "3"}, timeout=180)
    elapsed = time.monotonic() - started
    assert result.returncode in (0, 7), result.stderr
    assert elapsed < 5 + 30, f"the run took {elapsed:.0f} s with a 5 s budget"
    assert all(status_of(db, o.id) == "pending_verification" for o in orders)
    assert last_run(db)["sumup_errors"].get("timeout", 0) >= 1
    assert sumup.get_count() <= 2  # the first round only: every later order was started past the budget


def test_check_against_a_trickling_sumup_exits_7_within_its_timeouts(seed, db, sumup, run_payverify):
    """The status line and headers arrive a byte every 2 s (each read within the 3 s read timeout):
    `payverify check` gives up at connect + read timeout, exit 7, the order as it was."""
    event = seed.event(seed.artist())
    order = seed.order([(seed.ticket_type(event), 1)], event_id=event)
    sumup.script(order.checkout_id, Scripted(trickle=2.0))
    started = time.monotonic()
    result = run_payverify("check", order.order_number, extra_env={"PAYVERIFY_SUMUP_CONNECT_TIMEOUT": "2",
                                                                    "PAYVERIFY_SUMUP_READ_TIMEOUT": "3"},
                           timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 7, result.stderr
    assert "Traceback" not in result.stderr
    assert elapsed < 2 + 3 + 10, f"check took {elapsed:.0f} s with 2 + 3 s timeouts"
    assert sumup.get_count(order.checkout_id) == 1  # not retried: a server that slow is asked later
    assert status_of(db, order.id) == "pending_verification" and tickets_of(db, order.id) == 0


def test_sigterm_wakes_a_sweep_paused_by_a_429(seed, db, sumup, payverify_processes):
    """A cron or systemd sweep paused by a 429 (Retry-After: 60) gets SIGTERM: it stops waiting, finishes
    what is in flight, records the run and exits 0 within seconds; no order changes."""
    event = seed.event(seed.artist())
    ticket_type = seed.ticket_type(event)
    orders = [seed.order([(ticket_type, 1)], event_id=event) for _ in range(3)]
    for order in orders:
        sumup.script(order.checkout_id, *[Scripted(status=429, headers={"Retry-After": "60"})] * 3)
    proc = payverify_processes.start("sweep", PAYVERIFY_CONCURRENCY="1")
    eventually(lambda: served_429(sumup), within=60)  # the run is pausing (or about to): the premise holds
    code, err, took = timed_stop(proc)
    assert code == 0, err
    assert "Traceback" not in err
    assert took < 15, f"the sweep took {took:.0f} s to stop"
    assert all(status_of(db, o.id) == "pending_verification" for o in orders)
    assert sum(sumup.get_count(o.checkout_id) for o in orders) == 1  # nothing more was sent
    run = last_run(db)
    assert run["exit_status"] == 0 and json.dumps(run["sumup_errors"])


def test_sigterm_wakes_a_watch_paused_by_a_429(seed, db, sumup, start_watch):
    """`payverify watch` whose asks (or housekeeping sweep) are paused by a 429 with Retry-After: 60:
    SIGTERM ends the pause, and it exits 0 within seconds, not when the minute is up."""
    event = seed.event(seed.artist())
    ticket_type = seed.ticket_type(event)
    orders = [seed.order([(ticket_type, 1)], event_id=event) for _ in range(2)]
    for order in orders:
        sumup.script(order.checkout_id, *[Scripted(status=429, headers={"Retry-After": "60"})] * 3)
    proc = start_watch(PAYVERIFY_CONCURRENCY="1")
    eventually(lambda: served_429(sumup), within=60)
    code, err, took = timed_stop(proc)
    assert code == 0, err
    assert took < 15, f"watch took {took:.0f} s to stop"
    assert all(status_of(db, o.id) == "pending_verification" for o in orders)

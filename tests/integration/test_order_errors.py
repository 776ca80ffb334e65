"""Repeated errors are loud: an order whose verification errors run after run (not a SumUp "no
answer") is named on stderr, fails the heartbeat, is counted in the metrics, shows in `pending`, and
after three runs in a row gets staff one alert per streak."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from payverify.exitcodes import ExitStatus
from tests.helpers import row_locked, rows, scalar, status_of
from tests.observers import PING_TOKEN, PingServer, parse_prometheus, value
from tests.processes import eventually, stop

FAULT = {"PAYVERIFY_FAULT": "after_sumup_answer:raise"}
ALERTS_TO = "alerts@coderra.je"
BEAT = f"/ping/{PING_TOKEN}"


@pytest.fixture
def event(seed):
    artist = seed.artist()
    event_id = seed.event(artist)
    return event_id, seed.ticket_type(event_id)


def order_error_alerts(smtp, order) -> list:
    """The staff alerts captured so far that are about `order`'s verification errors."""
    return [m for m in smtp.messages if ALERTS_TO in m.rcpt_tos
            and "could not be verified" in m.parsed()["Subject"] and order.order_number in m.parsed()["Subject"]]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "could not be verified" in line]


def streak(db, order) -> dict:
    return rows(db, "SELECT consecutive_errors, first_error_at, last_error FROM payverify_order_state "
                    "WHERE order_id = %(id)s", id=order.id)[0]


def test_three_erroring_runs_alert_once_until_the_order_verifies_again(seed, event, db, smtp, run_payverify,
                                                                       tmp_path):
    """Runs 1-2 erroring: no alert; run 3: one alert per order naming it and the error; run 4: still
    one. Each run: a stderr line per order, heartbeat /fail, the counter grows, exit 0. A clean run
    ends the streak (and frees the key); three more erroring runs alert again."""
    event_id, tt = event
    paid = seed.order([(tt, 1)], event_id=event_id)  # settles once the fault is gone
    waiting = seed.order([(tt, 1)], event_id=event_id, sumup_status="PENDING")  # a decision, no settle
    metrics = tmp_path / "payverify.prom"
    with PingServer() as pings:
        monitored = {"PAYVERIFY_HEARTBEAT_URL": pings.url, "PAYVERIFY_METRICS_FILE": str(metrics)}

        def sweep(fault: bool):
            result = run_payverify("sweep", extra_env={**monitored, **(FAULT if fault else {})})
            assert result.returncode == 0, result.stderr
            return result, [(path, body.decode()) for _, path, body in pings.requests[-2:]]

        for run in (1, 2, 3, 4):
            result, beats = sweep(fault=True)
            lines = error_lines(result.stderr)
            assert len(lines) == 2 and len(result.stderr.splitlines()) == 2, result.stderr
            for order in (paid, waiting):
                (line,) = [x for x in lines if order.order_number in x]
                assert line.startswith(f"payverify: order {order.order_number} (id {order.id}) could not be verified")
                assert line.endswith(": unexpected InjectedFault")
            assert [path for path, _ in beats] == [f"{BEAT}/start", f"{BEAT}/fail"]
            assert "2 order(s) could not be verified" in beats[1][1]
            assert value(parse_prometheus(metrics.read_text()), "payverify_order_errors_total") == 2 * run
            assert streak(db, paid)["consecutive_errors"] == run
            expected_alerts = 0 if run < 3 else 1
            assert len(order_error_alerts(smtp, paid)) == expected_alerts, run
            assert len(order_error_alerts(smtp, waiting)) == expected_alerts, run
        assert "(4 runs in a row)" in error_lines(result.stderr)[0]

        (alert,) = order_error_alerts(smtp, paid)
        text = alert.parsed().get_body(("plain",)).get_content()
        for figure in (paid.order_number, f"(id {paid.id})", "unexpected InjectedFault", "3 runs in a row",
                       f"payverify check {paid.order_number}",
                       f"https://tickets.example.je/admin/orders/order/{paid.id}/change/"):
            assert figure in text, figure
        assert status_of(db, paid.id) == "pending_verification"  # an error changes no order

        pending = {o["order_number"]: o for o in json.loads(run_payverify("pending", "--json").stdout)}
        assert pending[paid.order_number]["consecutive_errors"] == 4
        assert pending[paid.order_number]["last_error"] == "unexpected InjectedFault"
        assert pending[paid.order_number]["first_error_at"] is not None
        shown = run_payverify("pending").stdout
        assert "last error (4 run(s) in a row since" in shown and "unexpected InjectedFault" in shown

        result, beats = sweep(fault=False)
        assert result.stderr == ""
        assert [path for path, _ in beats] == [f"{BEAT}/start", BEAT]
        assert status_of(db, paid.id) == "completed" and status_of(db, waiting.id) == "pending_verification"
        for order in (paid, waiting):
            assert streak(db, order) == {"consecutive_errors": 0, "first_error_at": None, "last_error": None}
        assert scalar(db, "SELECT count(*) FROM payverify_outbox WHERE kind = 'admin_alert_order_error' "
                          "AND dedup_key IS NOT NULL") == 0  # re-armed

        with db.transaction() as tx:  # set back by hand: erroring again is a new streak
            tx.fetch_sql("UPDATE orders_order SET status = 'pending_verification' WHERE id = %(id)s RETURNING id",
                         {"id": paid.id})
        for _ in range(3):
            sweep(fault=True)
        assert len(order_error_alerts(smtp, paid)) == 2
        assert len(order_error_alerts(smtp, waiting)) == 2
        assert value(parse_prometheus(metrics.read_text()), "payverify_order_errors_total") == 14


def test_a_run_without_errors_pings_success_not_fail(seed, event, run_payverify, tmp_path):
    """No order errored: the heartbeat gets the URL itself, not /fail, and the counter stays at 0."""
    event_id, tt = event
    seed.order([(tt, 1)], event_id=event_id)
    seed.order([(tt, 1)], event_id=event_id, sumup_status="PENDING")
    metrics = tmp_path / "payverify.prom"
    with PingServer() as pings:
        result = run_payverify("sweep", extra_env={"PAYVERIFY_HEARTBEAT_URL": pings.url,
                                                   "PAYVERIFY_METRICS_FILE": str(metrics)})
    assert result.returncode == 0 and result.stderr == ""
    assert [path for _, path, _ in pings.requests] == [f"{BEAT}/start", BEAT]
    assert "could not be verified" not in pings.requests[1][2].decode()
    assert value(parse_prometheus(metrics.read_text()), "payverify_order_errors_total") == 0


def test_stderr_lists_at_most_twenty_erroring_orders(seed, event, run_payverify):
    """With 23 erroring orders stderr has 20 order lines and one "and 3 more"; exit 0."""
    event_id, tt = event
    for _ in range(23):
        seed.order([(tt, 1)], event_id=event_id)
    result = run_payverify("sweep", extra_env=FAULT)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 21, result.stderr
    assert all(line.startswith("payverify: order JE-") for line in lines[:20])
    assert lines[20] == "payverify: and 3 more orders could not be verified (see the log file)"


def test_a_database_error_is_named_in_one_line(seed, event, db, database_url, run_payverify):
    """A real database error (the order's row locked past the lock timeout) is stored and shown as
    one line starting "database error:", with the order's number in the audit row."""
    event_id, tt = event
    order = seed.order([(tt, 1)], event_id=event_id)
    with row_locked(database_url, order.id):
        result = run_payverify("sweep", extra_env={"PAYVERIFY_DB_LOCK_TIMEOUT_MS": "300"})
    assert result.returncode == 0, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"payverify: order {order.order_number} (id {order.id}) could not be verified: "
                           "database error: ")
    assert "lock timeout" in line
    state = streak(db, order)
    assert state["consecutive_errors"] == 1 and state["last_error"].startswith("database error: ")
    assert "\n" not in state["last_error"]
    audit = rows(db, "SELECT order_number, outcome FROM payverify_audit WHERE order_id = %(id)s", id=order.id)
    assert audit == [{"order_number": order.order_number, "outcome": "error"}]


def test_pending_lists_erroring_failed_orders_in_the_rescue_window(seed, event, db, run_payverify):
    """A failed order in the rescue window whose verification errors is listed by `pending` (not with
    --stuck); a failed order without errors is not, nor an erroring one past the rescue window."""
    event_id, tt = event
    erroring = seed.order([(tt, 1)], event_id=event_id, status="failed", age=timedelta(hours=2))
    result = run_payverify("sweep", extra_env=FAULT)
    assert result.returncode == 0 and len(error_lines(result.stderr)) == 1, result.stderr
    quiet = seed.order([(tt, 1)], event_id=event_id, status="failed", age=timedelta(hours=3))
    old = seed.order([(tt, 1)], event_id=event_id, status="expired", age=timedelta(hours=30))
    with db.transaction() as tx:  # an order that kept erroring until it left the rescue window
        tx.fetch_sql("INSERT INTO payverify_order_state (order_id, consecutive_errors, first_error_at, last_error) "
                     "VALUES (%(id)s, 5, now() - interval '1 day', 'database error: x') RETURNING 1", {"id": old.id})

    listed = {o["order_number"]: o for o in json.loads(run_payverify("pending", "--json").stdout)}
    assert set(listed) == {erroring.order_number}, (quiet, old)
    assert listed[erroring.order_number]["status"] == "failed"
    assert listed[erroring.order_number]["consecutive_errors"] == 1
    assert listed[erroring.order_number]["last_error"] == "unexpected InjectedFault"
    assert erroring.order_number not in run_payverify("pending", "--stuck").stdout


def test_dry_run_errors_are_shown_but_not_recorded(seed, event, db, run_payverify):
    """A dry run names the erroring order on stderr but writes nothing: no audit row, no streak."""
    event_id, tt = event
    order = seed.order([(tt, 1)], event_id=event_id)
    result = run_payverify("sweep", "--dry-run", extra_env=FAULT)
    assert result.returncode == 0, result.stderr
    assert error_lines(result.stderr) == [
        f"payverify: order {order.order_number} (id {order.id}) could not be verified: unexpected InjectedFault"]
    assert scalar(db, "SELECT count(*) FROM payverify_audit") == 0
    assert scalar(db, "SELECT coalesce(sum(consecutive_errors), 0) FROM payverify_order_state") == 0


def test_check_names_a_database_error_in_one_line_and_counts_it(seed, event, db, database_url, run_payverify):
    """`check` takes the attempt path a sweep takes: the same database error is one stderr line naming
    the order, exit 1, and counts in the order's error streak as a sweep's would."""
    event_id, tt = event
    order = seed.order([(tt, 1)], event_id=event_id)
    with row_locked(database_url, order.id):
        result = run_payverify("check", order.order_number, extra_env={"PAYVERIFY_DB_LOCK_TIMEOUT_MS": "300"})
    assert result.returncode == ExitStatus.ERROR, (result.stdout, result.stderr)
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"payverify: order {order.order_number} (id {order.id}) could not be verified: "
                           "database error: ")
    assert "lock timeout" in line and result.stdout == ""
    state = streak(db, order)
    assert state["consecutive_errors"] == 1 and state["last_error"].startswith("database error: ")
    assert status_of(db, order.id) == "pending_verification"


def test_a_watch_asking_again_while_the_row_is_locked_counts_one_run_in_the_streak(
        seed, event, db, database_url, start_watch):
    """A customer returns while a migration (here: another transaction) holds their order's row past
    the lock timeout: watch asks again on the return's schedule and each ask errors. Those asks are one
    run's: the streak counts the runs that errored, not the asks, so no "could not be verified" alert
    goes to staff for a lock held seconds. Once the lock is gone the order completes and the streak ends."""
    event_id, tt = event
    order = seed.order([(tt, 1)], event_id=event_id)

    def errors() -> int:
        return scalar(db, "SELECT count(*) FROM payverify_audit WHERE order_id = %(id)s AND outcome = 'error'",
                      id=order.id)

    with row_locked(database_url, order.id):
        proc = start_watch(PAYVERIFY_DB_LOCK_TIMEOUT_MS="300")
        eventually(lambda: errors() >= 3, what="the watch asking again, each ask erroring")
        # One statement (one snapshot), the lock still held: the streak, the runs that errored, the alerts.
        (seen,) = rows(db, "SELECT s.consecutive_errors, "
                           "ARRAY(SELECT a.run_id FROM payverify_audit a WHERE a.order_id = s.order_id "
                           "      AND a.outcome = 'error') AS errored, "
                           "(SELECT count(*) FROM payverify_outbox o WHERE o.order_id = s.order_id "
                           " AND o.kind = 'admin_alert_order_error') AS alerts "
                           "FROM payverify_order_state s WHERE s.order_id = %(id)s", id=order.id)
    errored = seen["errored"]
    runs = set(errored)
    assert len(errored) > len(runs), errored  # a run asked more than once
    assert seen["consecutive_errors"] == len(runs) < 3, seen
    assert seen["alerts"] == 0
    eventually(lambda: status_of(db, order.id) == "completed", within=60 + 30, what="the order, lock gone")
    assert streak(db, order)["consecutive_errors"] == 0
    code, err = stop(proc)
    assert code == 0, err

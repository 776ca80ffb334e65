"""Monitoring against a real database: run rows, the metrics file of a seeded site, and a sweep
that pings the heartbeat and writes its metrics."""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import timedelta

import pytest
import structlog

from payverify.db import Database
from payverify.mail.sender import SendReport
from payverify.modes.sweep import SweepReport
from payverify.monitoring import (
    collect_metrics,
    publish_metrics,
    record_run_end,
    record_run_start,
    render_metrics,
)
from payverify.secret import Secret
from tests.helpers import rows
from tests.observers import HOST, PING_TOKEN, PingServer, parse_prometheus, value

pytestmark = pytest.mark.usefixtures("uncached_structlog")


def _sweep_report(run_id: str, outcomes: dict[str, int]) -> SweepReport:
    return SweepReport(run_id=run_id, dry_run=False, verified=sum(outcomes.values()), outcomes=Counter(outcomes))


def test_run_rows_record_start_and_end(db):
    """A run's row: started, then finished with its exit status, outcomes, SumUp errors and mail."""
    assert record_run_start(db, "run-a", HOST, "sweep") is True
    assert record_run_start(db, "run-a", HOST, "sweep") is False  # recorded once
    assert record_run_end(db, "run-a", 7, _sweep_report("run-a", {"completed": 2, "no_change": 1}),
                          SendReport(sent=2, failed=1), {"timeout": 3}) is True
    row = rows(db, "SELECT * FROM payverify_runs WHERE run_id = 'run-a'")[0]
    assert (row["host"], row["command"], row["exit_status"], row["verified"]) == (HOST, "sweep", 7, 3)
    assert row["outcomes"] == {"completed": 2, "no_change": 1} and row["sumup_errors"] == {"timeout": 3}
    assert (row["mail_sent"], row["mail_failed"]) == (2, 1)
    assert row["finished_at"] >= row["started_at"]
    assert record_run_start(db, "run-b", HOST, "sweep") and record_run_end(db, "run-b", 4, None, None, {})
    row = rows(db, "SELECT * FROM payverify_runs WHERE run_id = 'run-b'")[0]
    assert (row["exit_status"], row["verified"], row["outcomes"], row["mail_sent"]) == (4, None, {}, None)


def test_run_bookkeeping_never_raises(database_url):
    """With the database gone, recording a run logs a warning and returns False."""
    gone = Database.connect(Secret(database_url))
    gone.close()
    with structlog.testing.capture_logs() as logs:
        assert record_run_start(gone, "run-x", HOST, "sweep") is False
        assert record_run_end(gone, "run-x", 0, None, None, {}) is False
    assert [e["event"] for e in logs] == ["run.record_start_failed", "run.record_end_failed"]


def _seed_world(db, seed):
    """Orders, outbox rows and runs with known metric values."""
    artist = seed.artist()
    event = seed.event(artist)
    tt = seed.ticket_type(event)
    seed.order([(tt, 1)], event_id=event, status="pending_verification", age=timedelta(minutes=40))
    seed.order([(tt, 1)], event_id=event, status="pending", age=timedelta(minutes=10))
    seed.order([(tt, 1)], event_id=event, status="pending", age=timedelta(hours=5), checkout_id=None)  # not due
    seed.order([(tt, 1)], event_id=event, status="failed", age=timedelta(hours=6))  # not due
    paid = [seed.order([(tt, 1)], event_id=event, status="completed", age=timedelta(hours=3)) for _ in range(4)]
    with db.transaction() as tx:
        for order in paid:
            tx.fetch_sql("UPDATE orders_order SET paid_at = now() - interval '3 hours' WHERE id = %(id)s "
                         "RETURNING id", {"id": order.id})

    def outbox(kind, status, order_id=None, dedup=True, paid_ago=None, sent_ago=None):
        with db.transaction() as tx:
            tx.fetch_sql(
                "INSERT INTO payverify_outbox (kind, dedup_key, order_id, recipients, context, message_id, status,"
                " sent_at) VALUES (%(kind)s, %(dedup)s, %(order_id)s, ARRAY['fan@example.com'], '{}',"
                " gen_random_uuid()::text, %(status)s, CASE WHEN %(status)s = 'sent'"
                " THEN now() - make_interval(secs => %(sent_ago)s) END) RETURNING id",
                {"kind": kind, "dedup": f"{kind}:{os.urandom(6).hex()}" if dedup else None, "order_id": order_id,
                 "status": status, "sent_ago": sent_ago or 0})
            if paid_ago is not None:
                tx.fetch_sql("UPDATE orders_order SET paid_at = now() - make_interval(secs => %(s)s) "
                             "WHERE id = %(id)s RETURNING id", {"s": paid_ago, "id": order_id})

    outbox("order_confirmation", "pending")
    outbox("admin_alert_late_payment", "pending")
    outbox("payment_failed", "failed")
    outbox("order_confirmation", "sent", paid[0].id, paid_ago=100, sent_ago=40)  # 60 s
    outbox("order_confirmation", "sent", paid[1].id, paid_ago=50, sent_ago=20)  # 30 s
    outbox("order_confirmation", "sent", paid[2].id, paid_ago=3 * 3600, sent_ago=2 * 3600)  # sent 2 h ago
    outbox("order_confirmation", "sent", paid[3].id, dedup=False, sent_ago=10)  # a resend, 3 h after payment

    record_run_start(db, "r-ok", HOST, "sweep")
    record_run_end(db, "r-ok", 0, _sweep_report("r-ok", {"completed": 5}), SendReport(sent=5), {})
    record_run_start(db, "r-last", HOST, "sweep")
    record_run_end(db, "r-last", 7, _sweep_report("r-last", {"completed": 2, 'odd"one\\\n': 1}),
                   SendReport(), {"timeout": 3, "http_5xx": 1})
    record_run_start(db, "r-going", HOST, "sweep")
    record_run_start(db, "r-other-host", "web2", "sweep")
    record_run_end(db, "r-other-host", 0, _sweep_report("r-other-host", {"expired": 9}), None, {})
    record_run_start(db, "r-check", HOST, "check")
    record_run_end(db, "r-check", 0, None, None, {})
    with db.transaction() as tx:
        for run_id, at in (("r-ok", "2026-01-01T00:00:00Z"), ("r-last", "2026-01-01T00:05:00Z"),
                           ("r-other-host", "2026-01-01T00:10:00Z"), ("r-check", "2026-01-01T00:11:00Z")):
            tx.fetch_sql("UPDATE payverify_runs SET finished_at = %(at)s, started_at = %(at)s::timestamptz "
                         "- interval '42 seconds' WHERE run_id = %(r)s RETURNING id", {"at": at, "r": run_id})


def test_metrics_file_from_a_seeded_database(db, seed, tmp_path):
    """The file parses as Prometheus text and carries this host's runs and the database's state."""
    _seed_world(db, seed)
    path = tmp_path / "payverify.prom"
    assert publish_metrics(db, HOST, str(path)) is True
    text = path.read_text()
    samples = parse_prometheus(text)
    assert all(name.startswith("payverify_") for name, _ in samples)
    assert "# TYPE payverify_runs_total counter" in text
    assert "# TYPE payverify_payment_to_mail_seconds summary" in text

    assert value(samples, "payverify_runs_total", exit_status="0") == 1
    assert value(samples, "payverify_runs_total", exit_status="7") == 1
    assert value(samples, "payverify_runs_total", exit_status="unfinished") == 1
    assert sum(v for (n, _), v in samples.items() if n == "payverify_runs_total") == 3  # not web2, not check

    assert value(samples, "payverify_last_run_orders_verified", outcome="completed") == 2
    assert value(samples, "payverify_last_run_orders_verified", outcome='odd"one\\\n') == 1
    assert ("payverify_last_run_orders_verified", frozenset({("outcome", "expired")})) not in samples
    assert value(samples, "payverify_last_run_sumup_errors", kind="timeout") == 3
    assert value(samples, "payverify_last_run_sumup_errors", kind="http_5xx") == 1
    assert value(samples, "payverify_last_run_sumup_errors", kind="http_429") == 0  # every kind, even at 0

    assert value(samples, "payverify_outbox_backlog") == 2
    assert value(samples, "payverify_outbox_failed") == 1
    assert 40 * 60 - 5 <= value(samples, "payverify_oldest_due_order_age_seconds") <= 40 * 60 + 60

    assert value(samples, "payverify_payment_to_mail_seconds_count") == 2
    assert value(samples, "payverify_payment_to_mail_seconds_sum") == pytest.approx(90, abs=0.01)
    assert value(samples, "payverify_payment_to_mail_max_seconds") == pytest.approx(60, abs=0.01)

    assert value(samples, "payverify_last_success_timestamp_seconds") == 1767225600  # 2026-01-01T00:00Z
    assert value(samples, "payverify_last_run_timestamp_seconds") == 1767225900  # 00:05, exit 7


def test_metrics_of_an_empty_database(db):
    """Nothing yet: the gauges exist at 0 (so alerts on staleness fire), no runs, no outcomes."""
    samples = parse_prometheus(render_metrics(collect_metrics(db, HOST)))
    assert value(samples, "payverify_last_success_timestamp_seconds") == 0
    assert value(samples, "payverify_oldest_due_order_age_seconds") == 0
    assert value(samples, "payverify_payment_to_mail_seconds_count") == 0
    assert value(samples, "payverify_time_to_ticket_seconds_count") == 0
    assert value(samples, "payverify_time_to_ticket_seconds_bucket", le="+Inf") == 0
    assert value(samples, "payverify_outbox_backlog") == 0
    assert not [n for n, _ in samples if n in ("payverify_runs_total", "payverify_last_run_orders_verified")]


def test_publish_metrics_never_raises(db, tmp_path):
    """An unwritable path is a warning naming the path, not an exception; no path is a no-op."""
    with structlog.testing.capture_logs() as logs:
        assert publish_metrics(db, HOST, str(tmp_path / "missing-dir" / "payverify.prom")) is False
        assert publish_metrics(db, HOST, None) is False
    assert len(logs) == 1 and logs[0]["event"] == "metrics.write_failed" and logs[0]["log_level"] == "warning"
    assert "missing-dir" in logs[0]["path"]
    assert json.dumps(logs[0]["error"])  # a plain message


def test_sweep_pings_the_heartbeat_and_writes_metrics(seed, sumup, run_payverify, tmp_path):
    """A real cron run pings /start then the URL itself, records the run and writes the metrics file;
    a run where SumUp answers nothing pings /fail (exit 7)."""
    from payverify_dev.sumup_server import Scripted

    artist = seed.artist()
    event = seed.event(artist)
    seed.order([(seed.ticket_type(event), 1)], event_id=event)
    metrics = tmp_path / "payverify.prom"
    with PingServer() as pings:
        extra = {"PAYVERIFY_HEARTBEAT_URL": pings.url, "PAYVERIFY_METRICS_FILE": str(metrics)}
        assert run_payverify("sweep", extra_env=extra).returncode == 0
        paths = [path for _, path, _ in pings.requests]
        assert paths == [f"/ping/{PING_TOKEN}/start", f"/ping/{PING_TOKEN}"]
        samples = parse_prometheus(metrics.read_text())
        assert value(samples, "payverify_last_run_orders_verified", outcome="completed") == 1
        assert value(samples, "payverify_runs_total", exit_status="0") == 1

        seed.order([(seed.ticket_type(event), 1)], event_id=event)
        sumup.set_global_fault(Scripted(status=503))
        result = run_payverify("sweep", extra_env=extra)
        assert result.returncode == 7
        assert [path for _, path, _ in pings.requests][2:] == [f"/ping/{PING_TOKEN}/start", f"/ping/{PING_TOKEN}/fail"]
    assert PING_TOKEN not in result.stdout + result.stderr


def test_a_plain_http_heartbeat_off_this_machine_is_refused_at_configuration(run_payverify):
    """The ping URL is a secret: plain http:// to another host would show it to every hop. The run
    stops before anything (exit 3) with one line naming the variable, never its value."""
    result = run_payverify("sweep", extra_env={"PAYVERIFY_HEARTBEAT_URL": f"http://heartbeat.invalid/{PING_TOKEN}"})
    assert result.returncode == 3
    (line,) = result.stderr.splitlines()
    assert "PAYVERIFY_HEARTBEAT_URL" in line and "https://" in line
    assert PING_TOKEN not in result.stdout + result.stderr


def test_a_run_that_fails_mid_sweep_still_records_its_end_and_metrics(seed, db, run_payverify, tmp_path):
    """An exception escaping the sweep (a fault after the due orders are selected, outside any
    order's handler) still finishes the run row with the exit status the run ends with, and the metrics file
    is written; the process exits 1 with its one line and no traceback."""
    artist = seed.artist()
    event = seed.event(artist)
    seed.order([(seed.ticket_type(event), 1)], event_id=event)
    metrics = tmp_path / "payverify.prom"
    result = run_payverify("sweep", extra_env={"PAYVERIFY_METRICS_FILE": str(metrics),
                                               "PAYVERIFY_FAULT": "after_due_batch:raise"})
    assert result.returncode == 1, result.stderr
    assert "internal error (InjectedFault)" in result.stderr
    assert "Traceback" not in result.stderr
    (run,) = rows(db, "SELECT * FROM payverify_runs WHERE command = 'sweep'")
    assert run["finished_at"] is not None
    assert run["exit_status"] == 1
    samples = parse_prometheus(metrics.read_text())
    assert value(samples, "payverify_runs_total", exit_status="1") == 1

"""Retention: payverify's own old rows pruned in batches, at most hourly, keeping what people and
features still need; `payverify db prune`; a sent mail's row slimmed."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from payverify.db import Database
from payverify.db.queries import queries
from payverify.exitcodes import ExitStatus
from payverify.mail.kinds import ALERT_RECONNECT, CONFIRMATION
from payverify.modes.retention import EVERY_SECONDS, HELD_KINDS, TASK, hourly_prune, prune
from payverify.monitoring.metrics import collect_metrics
from payverify.secret import Secret
from tests.conftest import ROOT
from tests.helpers import rows, scalar

DAYS = 90
OLD = timedelta(days=DAYS, minutes=1)  # just older than the retention
YOUNG = timedelta(days=DAYS, minutes=-1)  # just younger
GONE_ORDER = 987_654  # an order id the site no longer has (or never had): nothing keeps its rows


@pytest.fixture
def shop(seed):
    artist = seed.artist()
    event = seed.event(artist, "Harbour Lights")
    return {"artist": artist, "event": event, "standing": seed.ticket_type(event, "Standing", "12.50")}


def _write(db: Database, sql: str, **params) -> int:
    with db.transaction() as tx:
        return tx.fetch_sql(sql + " RETURNING id", params)[0]["id"]


def audit(db: Database, order_id: int, age: timedelta) -> int:
    return _write(db, "INSERT INTO payverify_audit (run_id, host, command, order_id, outcome, reason, duration_ms,"
                      " created_at) VALUES ('r', 'h', 'sweep', %(order_id)s, 'completed', 'paid', 5, now() - %(age)s)",
                  order_id=order_id, age=age)


def mail(db: Database, order_id: int | None, age: timedelta, status: str = "sent", *, kind: str = CONFIRMATION,
         dedup_key: str | None = None) -> int:
    return _write(db, "INSERT INTO payverify_outbox (kind, dedup_key, order_id, recipients, context, message_id,"
                      " status, created_at, sent_at) VALUES (%(kind)s, %(key)s, %(order_id)s, ARRAY['a@example.com'],"
                      " '{}', gen_random_uuid()::text, %(status)s, now() - %(age)s,"
                      " CASE WHEN %(status)s = 'sent' THEN now() - %(age)s END)",
                  kind=kind, key=dedup_key, order_id=order_id, status=status, age=age)


def run_row(db: Database, age: timedelta, *, host: str = "h1", command: str = "sweep", exit_status: int | None = 0,
            order_errors: int = 0) -> int:
    """A run that started `age` ago and (unless exit_status is None) finished a minute later."""
    return _write(db, "INSERT INTO payverify_runs (run_id, host, command, started_at, finished_at, exit_status,"
                      " order_errors) VALUES (gen_random_uuid()::text, %(host)s, %(command)s, now() - %(age)s,"
                      " CASE WHEN %(status)s::int IS NOT NULL THEN now() - %(age)s + interval '1 minute' END,"
                      " %(status)s, %(errors)s)",
                  host=host, command=command, age=age, status=exit_status, errors=order_errors)


def ids(db: Database, table: str) -> set[int]:
    return {r["id"] for r in rows(db, f"SELECT id FROM {table}")}


def all_ids(db: Database) -> dict[str, set[int]]:
    return {t: ids(db, t) for t in ("payverify_audit", "payverify_outbox", "payverify_runs")}


def log_events(log_file: str, event: str) -> list[dict]:
    path = Path(log_file)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if f'"{event}"' in line]


# ---- what goes and what stays ---------------------------------------------------------------------

def test_rows_just_older_than_the_retention_go_and_just_younger_stay(db):
    """Audit, done mail (sent, cancelled) and run rows a minute past the retention go; a minute short stay."""
    run_row(db, timedelta(minutes=5))  # the latest run of its host and command
    old = {audit(db, GONE_ORDER, OLD), mail(db, GONE_ORDER, OLD, "sent"), mail(db, None, OLD, "cancelled"),
           run_row(db, OLD)}
    before = all_ids(db)
    report = prune(db, days=DAYS)
    after = all_ids(db)
    assert {i for t in before for i in before[t] - after[t]} == old
    assert report.removed == {"payverify_audit": 1, "payverify_outbox": 2, "payverify_runs": 1}
    assert report.complete
    young = {audit(db, GONE_ORDER, YOUNG), mail(db, GONE_ORDER, YOUNG), run_row(db, YOUNG)}
    prune(db, days=DAYS)
    assert young <= ids(db, "payverify_audit") | ids(db, "payverify_outbox") | ids(db, "payverify_runs")


def test_failed_and_pending_mail_stay(db):
    """However old, mail that failed or still waits is never pruned."""
    kept = {mail(db, GONE_ORDER, timedelta(days=400), "failed"), mail(db, GONE_ORDER, timedelta(days=400), "pending")}
    prune(db, days=DAYS)
    assert ids(db, "payverify_outbox") == kept


def test_rows_of_an_order_awaiting_a_person_stay(seed, shop, db):
    """An order in requires_manual_review, one still pending_verification, one whose verification keeps
    erroring: their old audit and sent mail stay. A completed order's go."""
    kinds = {}
    for status in ("requires_manual_review", "pending_verification", "completed", "expired"):
        kinds[status] = seed.order([(shop["standing"], 1)], event_id=shop["event"], status=status,
                                   age=timedelta(days=100)).id
    with db.transaction() as tx:  # the expired order errors run after run
        tx.fetch_sql("INSERT INTO payverify_order_state (order_id, consecutive_errors, first_error_at, last_error)"
                     " VALUES (%(id)s, 4, now(), 'database error') RETURNING order_id", {"id": kinds["expired"]})
    kept = {audit(db, kinds[s], OLD) for s in ("requires_manual_review", "pending_verification", "expired")}
    kept |= {mail(db, kinds[s], OLD) for s in ("requires_manual_review", "pending_verification", "expired")}
    audit(db, kinds["completed"], OLD)
    mail(db, kinds["completed"], OLD)
    prune(db, days=DAYS)
    assert ids(db, "payverify_audit") | ids(db, "payverify_outbox") == kept


def test_a_reconnect_alert_still_holding_its_key_stays(db):
    """A sent reconnect alert whose key is still set (the artist has not worked since) stays, so pruning
    never sends it again; a re-armed one (key cleared) goes."""
    held = mail(db, None, OLD, kind=ALERT_RECONNECT, dedup_key=f"{ALERT_RECONNECT}:artist:1")
    mail(db, None, OLD, kind=ALERT_RECONNECT, dedup_key=None)
    prune(db, days=DAYS)
    assert ids(db, "payverify_outbox") == {held}
    assert HELD_KINDS == (ALERT_RECONNECT,)


def test_latest_run_and_latest_success_stay_and_the_counters_never_go_down(db):
    """Per host and command the latest finished run and the latest successful one stay however old; an
    old killed run goes; the metrics' runs_total and order_errors_total read the same after the prune."""
    old_success = run_row(db, timedelta(days=300), exit_status=0, order_errors=2)
    latest_success = run_row(db, timedelta(days=200), exit_status=0)
    latest = run_row(db, timedelta(days=150), exit_status=1, order_errors=3)
    killed = run_row(db, timedelta(days=160), exit_status=None)
    other_host = run_row(db, timedelta(days=300), host="h2")
    watch = run_row(db, timedelta(days=300), command="watch", exit_status=7)
    metrics_before = {h: collect_metrics(db, h) for h in ("h1", "h2")}
    report = prune(db, days=DAYS)
    assert ids(db, "payverify_runs") == {latest_success, latest, other_host, watch}
    assert old_success not in ids(db, "payverify_runs") and killed not in ids(db, "payverify_runs")
    assert report.removed["payverify_runs"] == 2
    for host, before in metrics_before.items():
        after = collect_metrics(db, host)
        assert [m for m in after if m.type == "counter"] == [m for m in before if m.type == "counter"]
        assert next(m for m in after if m.name == "payverify_last_success_timestamp_seconds") == \
            next(m for m in before if m.name == "payverify_last_success_timestamp_seconds")
    run_row(db, timedelta(minutes=1), exit_status=0)  # a new success: the old latest ones may go now
    prune(db, days=DAYS)
    assert ids(db, "payverify_runs") & {latest_success, latest} == set()
    # Every run ever written for h1 is still counted (five sweeps and a watch), whatever was deleted.
    assert scalar(db, "SELECT sum(runs) FROM payverify_run_counts WHERE host = 'h1'") == 6


# ---- batches and bounds ---------------------------------------------------------------------------

def test_several_batches_remove_every_eligible_row_and_skip_the_kept(seed, shop, db):
    """With a batch of 3, a backlog of 10 old audit rows interleaved with kept ones takes several batches,
    and every eligible row goes while the kept ones stay."""
    review = seed.order([(shop["standing"], 1)], event_id=shop["event"], status="requires_manual_review").id
    doomed, kept = set(), set()
    for i in range(10):
        doomed.add(audit(db, GONE_ORDER, OLD + timedelta(minutes=i)))
        if i % 3 == 0:
            kept.add(audit(db, review, OLD + timedelta(minutes=i, seconds=30)))
    report = prune(db, days=DAYS, batch_size=3)
    assert ids(db, "payverify_audit") == kept
    assert report.removed["payverify_audit"] == 10
    assert report.batches >= 5  # 14 audit rows in batches of 3, plus the other tables' one each


def test_a_pass_bounded_in_time_leaves_the_rest_for_the_next(db):
    """A pass out of time stops before its next batch and says it is not complete; the next one goes on."""
    for i in range(5):
        audit(db, GONE_ORDER, OLD + timedelta(minutes=i))
    stopped = prune(db, days=DAYS, batch_size=2, seconds=0)
    assert not stopped.complete and stopped.batches == 0
    assert len(ids(db, "payverify_audit")) == 5
    assert prune(db, days=DAYS, batch_size=2).removed["payverify_audit"] == 5


def test_the_batch_deletes_read_indexes_not_the_whole_table(shop, db):
    """With 20,000 rows in each table a batch reads (the pruned tables, the orders, the order state),
    every batch query reads each of them through an index, never a sequential scan."""
    big = ("payverify_audit", "payverify_outbox", "payverify_runs", "orders_order", "payverify_order_state")
    with db.transaction() as tx:
        tx.fetch_sql("INSERT INTO orders_order (order_number, event_id, email, first_name, last_name, total, currency,"
                     " status, sumup_checkout_id, created_at, updated_at)"
                     " SELECT 'JE-' || g, %(event)s, 'a@example.com', 'A', 'B', 10, 'GBP',"
                     " CASE WHEN g %% 100 = 0 THEN 'requires_manual_review' ELSE 'completed' END,"
                     " 'c' || g, now() - g * interval '1 hour', now() FROM generate_series(1, 20000) g RETURNING 1",
                     {"event": shop["event"]})
        tx.fetch_sql("INSERT INTO payverify_order_state (order_id, consecutive_errors) SELECT id, 0 FROM orders_order"
                     " RETURNING 1")
        tx.fetch_sql("INSERT INTO payverify_audit (run_id, host, command, order_id, outcome, reason, duration_ms,"
                     " created_at) SELECT 'r', 'h', 'sweep', id, 'completed', 'paid', 5, created_at FROM orders_order"
                     " RETURNING 1")
        tx.fetch_sql("INSERT INTO payverify_outbox (kind, order_id, recipients, context, message_id, status,"
                     " created_at) SELECT 'order_confirmation', id, ARRAY['a@example.com'], '{}', 'm' || id,"
                     " CASE WHEN id % 10 = 0 THEN 'failed' ELSE 'sent' END, created_at FROM orders_order RETURNING 1")
        tx.fetch_sql("INSERT INTO payverify_runs (run_id, host, command, started_at, finished_at, exit_status)"
                     " SELECT 'r' || g, 'h' || g % 3, 'watch', now() - g * interval '1 hour',"
                     " now() - g * interval '1 hour' + interval '1 second', g % 2"
                     " FROM generate_series(1, 20000) g RETURNING 1")
    with db.transaction() as tx:
        tx.fetch_sql(f"ANALYZE {', '.join(big)}; SELECT 1")
    cutoff = scalar(db, "SELECT now() - interval '90 days'")
    params = {"cutoff": cutoff, "after_at": cutoff - timedelta(days=300), "after_id": 0, "batch": 1000,
              "dry_run": False, "held_kinds": list(HELD_KINDS)}
    for table, query in (("payverify_audit", "prune_audit_batch"), ("payverify_outbox", "prune_outbox_batch"),
                         ("payverify_runs", "prune_runs_batch")):
        with db.transaction() as tx:
            plan = tx.fetch_sql("EXPLAIN (FORMAT JSON) " + queries()[query], params)[0]["QUERY PLAN"]
        scans = list(_scans(plan[0]["Plan"]))
        assert not [rel for kind, rel in scans if kind == "Seq Scan" and rel in big], (query, scans)
        assert any(kind.startswith("Index") and rel == table for kind, rel in scans), (query, scans)
    report = prune(db, days=DAYS)  # and it does what the plans say
    assert report.removed["payverify_audit"] == scalar(
        db, "SELECT count(*) FROM orders_order WHERE status = 'completed' AND created_at < %(c)s", c=cutoff)


def _scans(node: dict):
    if "Relation Name" in node:
        yield node["Node Type"], node["Relation Name"]
    for child in node.get("Plans", ()):
        yield from _scans(child)


# ---- at most once an hour, on one host ------------------------------------------------------------

def test_a_sweep_prunes_at_most_once_an_hour(db, env, run_payverify):
    """The first sweep prunes; one 59 minutes after that pass does not; one 61 minutes after does."""
    first = audit(db, GONE_ORDER, OLD)
    assert run_payverify("sweep").returncode == ExitStatus.OK
    assert first not in ids(db, "payverify_audit")
    (event,) = log_events(env["PAYVERIFY_LOG_FILE"], "retention.pruned")
    assert event["audit"] == 1 and event["days"] == DAYS and event["complete"] is True

    def age_marker(minutes):
        with db.transaction() as tx:
            tx.fetch_sql("UPDATE payverify_housekeeping SET last_run_at = now() - %(m)s * interval '1 minute'"
                         " WHERE task = %(task)s RETURNING task", {"m": minutes, "task": TASK})

    second = audit(db, GONE_ORDER, OLD)
    age_marker(59)
    assert run_payverify("sweep").returncode == ExitStatus.OK
    assert second in ids(db, "payverify_audit")
    age_marker(61)
    assert run_payverify("sweep").returncode == ExitStatus.OK
    assert second not in ids(db, "payverify_audit")
    assert len(log_events(env["PAYVERIFY_LOG_FILE"], "retention.pruned")) == 2


def test_retention_days_setting_is_used_by_the_sweep(db, run_payverify):
    """PAYVERIFY_RETENTION_DAYS=10: a sweep prunes what is older than 10 days."""
    eleven, nine = audit(db, GONE_ORDER, timedelta(days=11)), audit(db, GONE_ORDER, timedelta(days=9))
    assert run_payverify("sweep", extra_env={"PAYVERIFY_RETENTION_DAYS": "10"}).returncode == ExitStatus.OK
    assert ids(db, "payverify_audit") >= {nine} and eleven not in ids(db, "payverify_audit")


def test_a_prune_that_fails_does_not_fail_the_run(db, run_payverify):
    """A prune batch that cannot get its lock (lock timeout): the sweep still exits 0, with one warning
    line saying so; the rows wait for the next pass."""
    old = audit(db, GONE_ORDER, OLD)
    with db.transaction() as tx:  # held while the sweep runs
        tx.fetch_sql("LOCK TABLE payverify_audit IN ACCESS EXCLUSIVE MODE; SELECT 1")
        result = run_payverify("sweep", extra_env={"PAYVERIFY_DB_LOCK_TIMEOUT_MS": "300"})
    assert result.returncode == ExitStatus.OK, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "retention.prune_failed" in line and "lock" in line
    assert old in ids(db, "payverify_audit")


def test_two_passes_at_once_only_one_prunes(database_url, settings, db):
    """While one host's claim is not yet committed, another host's pass waits for it, then finds the
    hour taken and prunes nothing."""
    old = audit(db, GONE_ORDER, OLD)
    result: dict[str, object] = {}
    with Database.connect(Secret(database_url)) as first, Database.connect(Secret(database_url)) as second:
        with first.transaction() as tx:
            assert tx.one("claim_housekeeping", task=TASK, host="a", run_id="a", every_seconds=EVERY_SECONDS)
            other = threading.Thread(target=lambda: result.update(b=hourly_prune(settings, second, host="b",
                                                                                 run_id="b")))
            other.start()
            other.join(1.0)
            assert other.is_alive()  # waiting on the first claim's row
        other.join(10)
    assert not other.is_alive() and result == {"b": None}
    assert old in ids(db, "payverify_audit")  # b did not prune (and a only claimed)
    assert scalar(db, "SELECT host FROM payverify_housekeeping WHERE task = %(t)s", t=TASK) == "a"


def test_concurrent_sweeps_prune_once(db, env):
    """Three sweeps started together: exactly one of them prunes."""
    for i in range(5):
        audit(db, GONE_ORDER, OLD + timedelta(minutes=i))
    procs = [subprocess.Popen([sys.executable, "-m", "payverify", "sweep"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == ExitStatus.OK, err
    events = log_events(env["PAYVERIFY_LOG_FILE"], "retention.pruned")
    assert len(events) == 1 and events[0]["audit"] == 5
    assert ids(db, "payverify_audit") == set()


# ---- payverify db prune ---------------------------------------------------------------------------

def test_db_prune_dry_run_changes_nothing_and_reports_counts(db, run_payverify):
    """--dry-run prints per table what would go, changes nothing; the real prune then removes exactly that."""
    run_row(db, timedelta(minutes=5))
    for age in (OLD, OLD, YOUNG):
        audit(db, GONE_ORDER, age)
    mail(db, GONE_ORDER, OLD)
    mail(db, GONE_ORDER, OLD, "failed")
    run_row(db, OLD)
    before = all_ids(db)
    dry = run_payverify("db", "prune", "--dry-run")
    assert dry.returncode == ExitStatus.OK, dry.stderr
    assert dry.stderr == ""
    lines = dry.stdout.splitlines()
    assert lines[:3] == ["payverify_audit: 2 rows would be removed", "payverify_outbox: 1 row would be removed",
                         "payverify_runs: 1 row would be removed"]
    assert "dry run, nothing changed" in lines[3] and "older than 90 days" in lines[3]
    assert all_ids(db) == before
    real = run_payverify("db", "prune")
    assert real.returncode == ExitStatus.OK, real.stderr
    assert real.stdout.splitlines()[:3] == ["payverify_audit: 2 rows removed", "payverify_outbox: 1 row removed",
                                            "payverify_runs: 1 row removed"]
    assert sum(len(before[t] - ids(db, t)) for t in before) == 4


@pytest.mark.parametrize("value, days", [("30d", 30), ("30", 30), (" 7d ", 7)])
def test_db_prune_older_than(db, run_payverify, value, days):
    """--older-than takes days as `30d` or `30`: rows older than that go, younger ones stay."""
    older = audit(db, GONE_ORDER, timedelta(days=days, minutes=1))
    younger = audit(db, GONE_ORDER, timedelta(days=days, minutes=-1))
    result = run_payverify("db", "prune", "--older-than", value)
    assert result.returncode == ExitStatus.OK, result.stderr
    assert result.stdout.splitlines()[0] == "payverify_audit: 1 row removed"
    assert ids(db, "payverify_audit") == {younger} and older not in ids(db, "payverify_audit")


@pytest.mark.parametrize("value", ["abc", "0", "0d", "-5", "12h", "90x", "1.5", "", "36501", "9" * 40])
def test_db_prune_older_than_garbage_is_one_line_and_the_usage_exit(db, run_payverify, value):
    """A bad --older-than: exit 2, one line on stderr naming the value, nothing removed."""
    audit(db, GONE_ORDER, timedelta(days=400))
    result = run_payverify("db", "prune", "--older-than", value)
    assert result.returncode == ExitStatus.USAGE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--older-than" in lines[0] and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert len(ids(db, "payverify_audit")) == 1


def test_a_bad_retention_setting_is_a_config_error(db, run_payverify):
    """PAYVERIFY_RETENTION_DAYS=0: exit 3, one line naming the variable."""
    result = run_payverify("db", "prune", extra_env={"PAYVERIFY_RETENTION_DAYS": "0"})
    assert result.returncode == ExitStatus.CONFIG
    (line,) = result.stderr.strip().splitlines()
    assert "PAYVERIFY_RETENTION_DAYS" in line


# ---- a sent mail's row ----------------------------------------------------------------------------

def test_a_sent_mail_keeps_only_what_names_it_and_check_and_resend_still_work(seed, shop, db, smtp, run_payverify):
    """Once sent, a confirmation's row keeps its order id and number and the artist, not the customer's
    name, items or amounts; `check` still shows the mail as sent and `resend` sends the same tickets."""
    order = seed.order([(shop["standing"], 2)], event_id=shop["event"], email="ana@example.com", first_name="Ana",
                       last_name="Silva")
    assert run_payverify("sweep").returncode == ExitStatus.OK
    (row,) = rows(db, "SELECT context, status, recipients, time_to_ticket_seconds FROM payverify_outbox"
                      " WHERE order_id = %(id)s", id=order.id)
    assert row["status"] == "sent"
    assert row["context"] == {"order_id": order.id, "order_number": order.order_number,
                              "artist": {"id": shop["artist"].id, "name": "Lua Verde"}}
    assert row["recipients"] == ["ana@example.com"] and row["time_to_ticket_seconds"] is not None

    check = run_payverify("check", order.order_number)
    assert check.returncode == ExitStatus.OK, check.stderr
    assert f"Mail:     {CONFIRMATION} to ana@example.com: sent" in check.stdout

    resend = run_payverify("resend", order.order_number, "--to", "other@example.com")
    assert resend.returncode == ExitStatus.OK, resend.stderr
    (again,) = [m for m in smtp.messages if "other@example.com" in m.rcpt_tos]
    text = again.parsed().get_body(preferencelist=("plain",)).get_content()
    codes = [r["code"] for r in rows(db, "SELECT code FROM tickets_ticket WHERE order_id = %(id)s", id=order.id)]
    assert len(codes) == 2 and all(code in text for code in codes)
    assert "Ana" in text
    slim = rows(db, "SELECT context FROM payverify_outbox WHERE order_id = %(id)s AND status = 'sent'", id=order.id)
    assert len(slim) == 2 and all("customer_name" not in r["context"] for r in slim)

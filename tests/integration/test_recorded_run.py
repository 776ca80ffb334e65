"""One recorded run (modes/recorded.py) against a real database and a local heartbeat receiver: a run
that raises is finished with the status the process exits with, a lost database leaves it
unfinished with no metrics written, a dry run records nothing; and a real reconcile that dies is
recorded so."""

from __future__ import annotations

import pytest

from payverify.db import Database
from payverify.errors import DatabaseUnavailable
from payverify.exitcodes import ExitStatus
from payverify.modes.recorded import Bookkeeping, recorded_run
from payverify.monitoring.metrics import thread_errors
from payverify.secret import Secret
from tests.helpers import rows
from tests.observers import HOST, PING_TOKEN, PingServer, parse_prometheus, value
from tests.processes import eventually, stop

pytestmark = pytest.mark.usefixtures("uncached_structlog")


def _books(pings: PingServer, metrics, **overrides) -> Bookkeeping:
    return Bookkeeping(**{"host": HOST, "command": "watch", "heartbeat_url": Secret(pings.url),
                          "metrics_file": str(metrics), "metrics_command": "watch",
                          "extra_metrics": lambda: [thread_errors({"housekeeping": 2})], "ping_start": False,
                          "failed": "watch {run_id}: housekeeping failed ({error})", **overrides})


def _run_row(db, run_id: str) -> dict:
    (row,) = rows(db, "SELECT * FROM payverify_runs WHERE run_id = %(r)s", r=run_id)
    return row


def test_a_pass_that_raises_is_finished_with_its_exit_status(database_url, db, tmp_path):
    """A watch housekeeping pass hit by a bug: its row ends with 1, the metrics file (with the process's
    own counters) is written, the heartbeat gets /fail naming the exception, and the exception goes on."""
    metrics = tmp_path / "payverify.prom"
    with PingServer() as pings:
        with pytest.raises(RuntimeError), \
                recorded_run(lambda: Database.connect(Secret(database_url)), "w-1", _books(pings, metrics)):
            raise RuntimeError("a bug")
        assert [(path, body) for _, path, body in pings.requests] == [
            (f"/ping/{PING_TOKEN}/fail", b"watch w-1: housekeeping failed (RuntimeError)")]
    row = _run_row(db, "w-1")
    assert (row["command"], row["exit_status"], row["finished_at"] is not None) == ("watch", 1, True)
    samples = parse_prometheus(metrics.read_text())
    assert value(samples, "payverify_runs_total", exit_status="1") == 1
    assert value(samples, "payverify_thread_errors_total", loop="housekeeping") == 2


def test_a_lost_database_leaves_the_row_unfinished_and_writes_no_metrics(database_url, db, tmp_path):
    metrics = tmp_path / "payverify.prom"
    with PingServer() as pings:
        books = _books(pings, metrics, command="sweep", metrics_command="sweep", ping_start=True,
                       failed="run {run_id} failed: {error}")
        with pytest.raises(DatabaseUnavailable), \
                recorded_run(lambda: Database.connect(Secret(database_url)), "s-1", books):
            raise DatabaseUnavailable("the database went away")
        assert [(path, body) for _, path, body in pings.requests] == [
            (f"/ping/{PING_TOKEN}/start", b""), (f"/ping/{PING_TOKEN}/fail", b"run s-1 failed: DatabaseUnavailable")]
    row = _run_row(db, "s-1")
    assert (row["exit_status"], row["finished_at"]) == (None, None)
    assert not metrics.exists()


def test_the_outcome_it_is_told_goes_to_the_row_and_the_heartbeat(database_url, db, tmp_path):
    metrics = tmp_path / "payverify.prom"
    with PingServer() as pings:
        with recorded_run(lambda: Database.connect(Secret(database_url)), "w-2", _books(pings, metrics)) as run:
            run.end(ExitStatus.SUMUP_UNAVAILABLE, "watch w-2: 0 error(s), exit 7")
        with recorded_run(lambda: Database.connect(Secret(database_url)), "w-3", _books(pings, metrics)) as run:
            run.end(ExitStatus.OK, "watch w-3: 1 of 1 due verified")
        assert [(path, body) for _, path, body in pings.requests] == [
            (f"/ping/{PING_TOKEN}/fail", b"watch w-2: 0 error(s), exit 7"),
            (f"/ping/{PING_TOKEN}", b"watch w-3: 1 of 1 due verified")]
    assert [_run_row(db, r)["exit_status"] for r in ("w-2", "w-3")] == [7, 0]


def test_a_dry_run_records_nothing(database_url, db, tmp_path):
    metrics = tmp_path / "payverify.prom"
    with PingServer() as pings, \
            recorded_run(lambda: Database.connect(Secret(database_url)), "d-1",
                         _books(pings, metrics, heartbeat_url=None, record=False)) as run:
        run.end(ExitStatus.OK)
    assert rows(db, "SELECT * FROM payverify_runs") == []
    assert not metrics.exists() and pings.requests == []


def test_a_reconcile_that_dies_is_recorded_with_its_exit_status(seed, db, sumup, run_payverify, tmp_path):
    """An exception escaping the reconciliation (after the first account) finishes its run row with the
    status the process exits with, and the metrics file is written (before, the row stayed unfinished)."""
    seed.artist("Lua Verde")
    metrics = tmp_path / "payverify.prom"
    result = run_payverify("reconcile", extra_env={"PAYVERIFY_METRICS_FILE": str(metrics),
                                                   "PAYVERIFY_FAULT": "after_reconcile_account@1:raise"})
    assert result.returncode == ExitStatus.ERROR, result.stderr
    assert "Traceback" not in result.stderr
    (run,) = rows(db, "SELECT * FROM payverify_runs WHERE command = 'reconcile'")
    assert (run["exit_status"], run["finished_at"] is not None) == (1, True)
    assert metrics.exists()


def test_a_watch_pass_pings_success_without_start_and_writes_watchs_metrics(start_watch, db, tmp_path):
    """Watch's housekeeping: no /start (a pass is part of a service), then the URL itself with what the
    pass did; its row is finished and the metrics file is watch's, with the loops' error counters."""
    metrics = tmp_path / "payverify.prom"
    with PingServer() as pings:
        proc = start_watch(PAYVERIFY_HEARTBEAT_URL=pings.url, PAYVERIFY_METRICS_FILE=str(metrics))
        eventually(lambda: len(pings.requests) >= 1, within=60 + 45, what="the first pass's ping")
        assert stop(proc)[0] == 0
    run_id = rows(db, "SELECT run_id FROM payverify_runs WHERE command = 'watch' ORDER BY id LIMIT 1")[0]["run_id"]
    assert pings.requests[0][1:] == (f"/ping/{PING_TOKEN}", f"watch {run_id}: 0 of 0 due verified".encode())
    assert all(path != f"/ping/{PING_TOKEN}/start" for _, path, _ in pings.requests)
    assert _run_row(db, run_id)["exit_status"] == 0
    samples = parse_prometheus(metrics.read_text())
    assert value(samples, "payverify_runs_total", exit_status="0") >= 1
    assert value(samples, "payverify_thread_errors_total", loop="housekeeping") == 0

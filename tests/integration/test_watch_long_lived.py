"""What a long-running `payverify watch` keeps is refreshed: a real process, a real Postgres, the SumUp
simulator. The metrics its housekeeping writes are watch's own.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import ROOT
from tests.helpers import scalar
from tests.observers import parse_prometheus, value

SETTLE_WITHIN = 15.0  # the watch's own asks take a second; this is for a loaded machine


def eventually(check: Callable[[], bool], within: float = SETTLE_WITHIN, what: str = "") -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        if check():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{what or 'condition'} not within {within} s")


@pytest.fixture
def start_watch(env) -> Iterator[Callable[..., subprocess.Popen]]:
    started: list[subprocess.Popen] = []

    def start(**extra: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "payverify", "watch"],
                                env={**env, "PAYVERIFY_WATCH_INTERVAL": "0.2", **extra}, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def passes_ended(db) -> int:
    return scalar(db, "SELECT count(*) FROM payverify_runs WHERE command = 'watch' AND finished_at IS NOT NULL")


def after_a_pass(db, *, at_least: int) -> tuple[int, str]:
    """Wait until `at_least` housekeeping passes have ended (within the minute they run in); then the
    next one is most of a minute away. The count of passes ended and the watch's own run id."""
    eventually(lambda: passes_ended(db) >= at_least, within=60 + 45, what=f"housekeeping pass {at_least}")
    run_id = scalar(db, "SELECT run_id FROM payverify_runs WHERE command = 'watch' ORDER BY id LIMIT 1")
    return passes_ended(db), run_id.rsplit("-", 1)[0]


def test_watch_publishes_its_metrics_as_watch(start_watch, db, tmp_path):
    """A host that runs only `payverify watch` (no cron sweep ever ran): after its first housekeeping
    pass, the metrics file's last success is that pass, not 0."""
    metrics = tmp_path / "payverify.prom"
    started = time.time()
    proc = start_watch(PAYVERIFY_METRICS_FILE=str(metrics))
    after_a_pass(db, at_least=1)
    eventually(metrics.exists, what="the metrics file")
    samples = parse_prometheus(metrics.read_text())
    assert started - 5 <= value(samples, "payverify_last_success_timestamp_seconds") <= time.time() + 5
    assert value(samples, "payverify_last_run_timestamp_seconds") >= started - 5
    assert value(samples, "payverify_runs_total", exit_status="0") >= 1
    assert scalar(db, "SELECT count(*) FROM payverify_runs WHERE command = 'sweep'") == 0
    assert stop(proc)[0] == 0

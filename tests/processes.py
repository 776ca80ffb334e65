"""Real `payverify` processes for the tests: started, waited on, stopped, and never left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.helpers import scalar

ROOT = Path(__file__).resolve().parent.parent
SETTLE_WITHIN = 15.0  # seconds; payverify's own schedules are far quicker, this is for a loaded machine


def eventually(check: Callable[[], bool], within: float = SETTLE_WITHIN, what: str = "") -> float:
    """Poll until `check()` holds; the seconds it took. Fails the test when it never does."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if check():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{what or 'condition'} not within {within} s")


def stop(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    """SIGTERM, then the exit status and stderr."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def timed_stop(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, float]:
    """SIGTERM, then the exit status, stderr and the seconds it took to exit."""
    signalled = time.monotonic()
    code, err = stop(proc, timeout)
    return code, err, time.monotonic() - signalled


def state(pid: int) -> str:
    """A process's state letter from /proc/PID/stat (T: stopped, Z: a zombie); "gone" once reaped."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return "gone"


def wait_held(proc: subprocess.Popen, within: float = 90.0) -> None:
    """Until the process is held at its fault point (`NAME:stop`: it SIGSTOPped itself)."""
    def held() -> bool:
        assert proc.poll() is None, f"exited ({proc.returncode}) before reaching the fault point"
        return state(proc.pid) == "T"

    eventually(held, within, "the process held at its fault point")


def children(parent: int) -> list[int]:
    """The processes whose parent is `parent`, as /proc lists them now."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
        if ppid == parent:
            found.append(int(entry.name))
    return found


def compose_workers(parent: int) -> list[int]:
    """The compose worker processes of `parent` (spawned interpreters; not the resource tracker)."""
    found = []
    for pid in children(parent):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        if b"spawn_main" in cmdline:
            found.append(pid)
    return found


class Processes:
    """`start(command, **env)` runs `payverify COMMAND` (a watch polls every 0.2 s); `close()` kills
    whatever is still running, stopped ones and their compose workers included."""

    def __init__(self, env: dict[str, str]) -> None:
        self._env = env
        self._started: list[subprocess.Popen] = []

    def start(self, command: str, *args: str, **extra: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "payverify", command, *args],
                                env={**self._env, "PAYVERIFY_WATCH_INTERVAL": "0.2", **extra}, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._started.append(proc)
        return proc

    def close(self) -> None:
        for proc in self._started:
            if proc.poll() is None:
                for pid in compose_workers(proc.pid):  # a stopped one would keep stderr open
                    os.kill(pid, signal.SIGKILL)
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            proc.communicate(timeout=30)


def passes_ended(db) -> int:
    """Housekeeping passes of `payverify watch` ended so far (each records a run)."""
    return scalar(db, "SELECT count(*) FROM payverify_runs WHERE command = 'watch' AND finished_at IS NOT NULL")


def after_a_pass(db, *, at_least: int) -> tuple[int, str]:
    """Wait until `at_least` housekeeping passes have ended (within the minute they run in); then the
    next one is most of a minute away. The count of passes ended and the watch's own run id."""
    eventually(lambda: passes_ended(db) >= at_least, within=60 + 45, what=f"housekeeping pass {at_least}")
    run_id = scalar(db, "SELECT run_id FROM payverify_runs WHERE command = 'watch' ORDER BY id LIMIT 1")
    return passes_ended(db), run_id.rsplit("-", 1)[0]

"""No core dumps: one would hold every secret payverify knows. The process lowers its own limit to
0 at start, whatever it was given, and the systemd units say LimitCORE=0 as well."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.processes import wait_held


def core_limit(pid: int) -> tuple[str, str]:
    """(soft, hard) "Max core file size" from /proc/PID/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            soft, hard = line.split()[4:6]
            return soft, hard
    raise AssertionError("no core file size in /proc/PID/limits")


def allow_core_dumps() -> None:
    """In the child before exec: as large a core limit as this machine lets us give."""
    _, hard = resource.getrlimit(resource.RLIMIT_CORE)
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))


def test_a_run_allows_itself_no_core_dump(seed, env):
    """A sweep started with core dumps allowed is held at a fault point; /proc/PID/limits then shows
    its core limit at 0 (soft and hard), so not even a crash in a C extension writes one."""
    _, hard = resource.getrlimit(resource.RLIMIT_CORE)
    if hard == 0 and os.geteuid() != 0:
        pytest.skip("core dumps are already impossible here: nothing to show")
    artist = seed.artist()
    event = seed.event(artist)
    seed.order([(seed.ticket_type(event), 1)], event_id=event)
    proc = subprocess.Popen([sys.executable, "-m", "payverify", "sweep"], cwd=ROOT, preexec_fn=allow_core_dumps,
                            env={**env, "PAYVERIFY_FAULT": "after_due_batch:stop"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_held(proc, 90)
        assert core_limit(proc.pid) == ("0", "0")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)


def test_every_systemd_unit_says_limitcore_0():
    units = sorted((ROOT / "systemd").glob("*.service"))
    assert units
    for unit in units:
        assert "\nLimitCORE=0\n" in unit.read_text(), unit.name


def test_a_payverify_process_is_not_dumpable():
    """Not dumpable: its /proc/PID/environ and memory are root's alone, so a compose worker (the
    same user, parsing customer data) cannot read its parent's secrets. Asked of the process itself
    (PR_GET_DUMPABLE), since a test running as root would read its /proc files anyway."""
    if not sys.platform.startswith("linux"):
        pytest.skip("Linux only")
    program = ("import ctypes, resource; from payverify.cli import no_core_dumps; no_core_dumps(); "
               "print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0), resource.getrlimit(resource.RLIMIT_CORE))")
    out = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         preexec_fn=allow_core_dumps)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(None, 1) == ["0", "(0, 0)\n"]

"""`make demo` (python -m payverify_dev.demo): the newcomer's path, on an embedded Postgres with the simulators."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from email import message_from_bytes, policy
from pathlib import Path

from tests.conftest import ROOT
from tests.processes import state


def test_demo_shows_every_outcome_with_its_mail(tmp_path):
    """One command, no configuration: every outcome of the decision table appears with its reason,
    every mail is written as .eml with its attachments; a real watch confirms a customer's order
    (its time to ticket) and is gone after; a real reconcile finds a refund made after completion and
    staff are alerted; the demo exits 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAYVERIFY_", "SUMUP_"))}
    out = tmp_path / "demo-output"
    result = subprocess.run([sys.executable, "-m", "payverify_dev.demo", "--output", str(out)], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    table = result.stdout
    for outcome in ("completed", "failed", "expired", "requires_manual_review", "pending_verification"):
        assert f" {outcome} " in table
    assert "late payment" in table and "grace" in table and "HTTP 404" in table
    emls = sorted((out / "mail").glob("*.eml"))
    kinds = {message_from_bytes(p.read_bytes(), policy=policy.default)["Subject"] for p in emls}
    assert len(emls) >= 10
    assert any("stuck" in k.lower() for k in kinds)
    assert any("reconnect" in k.lower() or "sumup" in k.lower() for k in kinds)
    assert list((out / "mail").glob("*-tickets-*.pdf")) and list((out / "mail").glob("*-event.ics"))
    assert (out / "payverify.log").stat().st_size > 0
    # The watch: one customer's return, PENDING, then PAID, confirmed while it runs; stopped cleanly.
    watch = table.split("== 2. payverify watch", 1)[1].split("== 3.", 1)[0]
    assert "still PENDING" in watch and "exited 0" in watch
    assert float(re.search(r"Time to ticket: ([0-9.]+) s", watch).group(1)) < 60
    assert not _watches_writing_to(out)
    # Reconcile: the refund of an order the sweep completed, found by the real command and alerted.
    refunded = re.search(r"Someone refunded (JE-[0-9A-F]+)", table).group(1)
    assert re.search(rf"NEW refunded_after_completion +{refunded} \(completed\)", table)
    messages = [message_from_bytes(p.read_bytes(), policy=policy.default) for p in emls]
    (alert,) = [m for m in messages if "Reconciliation" in m["Subject"]]
    assert refunded in alert.get_body(preferencelist=("plain",)).get_content()


def test_an_interrupted_demo_leaves_no_watch_behind(tmp_path):
    """Ctrl-C while the watch runs (SumUp still says PENDING): the demo stops and its watch is gone
    with it (a watch left running would retry the vanished database forever)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAYVERIFY_", "SUMUP_"))}
    out = tmp_path / "demo-output"
    demo = subprocess.Popen([sys.executable, "-m", "payverify_dev.demo", "--output", str(out)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        watch = None
        for line in demo.stdout:
            if started := re.search(r"`payverify watch` started \(pid (\d+)", line):
                watch = int(started.group(1))
            if "watch asked SumUp" in line:  # in its loop: it outlives a parent that forgets it
                break
        else:
            raise AssertionError("the demo's watch never asked SumUp")
        assert watch is not None
        assert state(watch) not in ("gone", "Z")
        demo.send_signal(signal.SIGINT)  # only the demo: a terminal's Ctrl-C would reach the watch too
        rest, _ = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate(timeout=30)
    assert demo.returncode != 0
    assert "SIGTERM to the watch" not in rest  # interrupted while the demo held the watch, not after
    assert state(watch) == "gone" and not _watches_writing_to(out)


def _watches_writing_to(out) -> list[int]:
    """`payverify watch` processes still running with the demo's log file: none may outlive the demo."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline, environ = (entry / "cmdline").read_bytes(), (entry / "environ").read_bytes()
        except OSError:  # not a process, gone meanwhile, or not ours
            continue
        if b"watch" in cmdline.split(b"\0") and str(out).encode() in environ:
            found.append(int(entry.name))
    return found


def test_demo_refuses_a_configured_database(tmp_path):
    """With PAYVERIFY_DATABASE_URL set the demo refuses (exit 8) and touches nothing."""
    env = {**os.environ, "PAYVERIFY_DATABASE_URL": "postgresql://prod.example/tickets"}
    result = subprocess.run([sys.executable, "-m", "payverify_dev.demo", "--output", str(tmp_path / "o")], env=env,
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 8
    assert "PAYVERIFY_DATABASE_URL" in result.stderr
    assert not (tmp_path / "o").exists()

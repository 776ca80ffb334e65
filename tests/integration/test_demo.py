"""`make demo` (python -m payverify_dev.demo): the newcomer's path, on an embedded Postgres with the simulators."""

from __future__ import annotations

import os
import subprocess
import sys
from email import message_from_bytes, policy

from tests.conftest import ROOT


def test_demo_shows_every_outcome_with_its_mail(tmp_path):
    """One command, no configuration: every outcome of the decision table appears with its reason,
    every mail is written as .eml with its attachments, and the demo exits 0."""
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


def test_demo_refuses_a_configured_database(tmp_path):
    """With PAYVERIFY_DATABASE_URL set the demo refuses (exit 8) and touches nothing."""
    env = {**os.environ, "PAYVERIFY_DATABASE_URL": "postgresql://prod.example/tickets"}
    result = subprocess.run([sys.executable, "-m", "payverify_dev.demo", "--output", str(tmp_path / "o")], env=env,
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 8
    assert "PAYVERIFY_DATABASE_URL" in result.stderr
    assert not (tmp_path / "o").exists()

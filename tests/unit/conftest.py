"""The unit tier starts no process and needs no server: a test that tries either fails, saying so."""

from __future__ import annotations

import subprocess

import pytest

# The fixtures of conftest.py that reach a database or start a server.
SERVER_FIXTURES = {"pg_url", "template_db", "database_url", "empty_database_url", "db", "seed", "sumup", "smtp",
                   "env", "settings", "run_payverify"}


@pytest.fixture(autouse=True)
def _unit_tier_rules(request, monkeypatch):
    wanted = SERVER_FIXTURES & set(request.fixturenames)
    if wanted:
        raise AssertionError(f"{request.node.nodeid} uses {sorted(wanted)}: it belongs in tests/integration")

    def refuse(*args, **kwargs):
        raise AssertionError(f"{request.node.nodeid} starts a process: it belongs in tests/integration")

    monkeypatch.setattr(subprocess, "Popen", refuse)

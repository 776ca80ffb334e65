"""The commands parse their arguments, call one mode function and print: no module of payverify/cli/
opens a transaction, runs a named query or sends mail itself (import-linter keeps the mail sender and
the database connection out of its imports)."""

from __future__ import annotations

import re
from pathlib import Path

import payverify.cli

CLI = Path(payverify.cli.__file__).parent
# A transaction opened, a named query run in one, the outbox sent.
MODE_WORK = re.compile(r"\.transaction\(|\btx\.\w+\(|\bdeliver\(")


def mode_work(source: str) -> list[str]:
    return [line.strip() for line in source.splitlines() if MODE_WORK.search(line)]


def test_the_pattern_finds_what_a_command_used_to_do():
    old_pending = '''    with rt.database(read_only=True) as db, db.transaction() as tx:
        orders = tx.all("pending_orders", stuck=stuck, limit=limit)
        mail = deliver(rt.settings, db, order_id=order_id)
'''
    assert len(mode_work(old_pending)) == 3


def test_no_cli_module_does_mode_work():
    modules = sorted(CLI.glob("*.py"))
    assert {"commands.py", "database.py", "report.py"} <= {m.name for m in modules}
    found = {m.name: mode_work(m.read_text(encoding="utf-8")) for m in modules}
    assert {name: lines for name, lines in found.items() if lines} == {}

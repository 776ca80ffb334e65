"""The typed rows carry exactly the columns of their query, in its order: `check --json` and `pending
--json` print them with dataclasses.asdict, so a field out of order would reorder the JSON."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, fields
from datetime import UTC, datetime

import pytest

from payverify.db.queries import queries
from payverify.mail.rows import OutboxRow, OutgoingRow
from payverify.modes.pending import PendingRow
from payverify.orders.audit import AuditRow


def returned_columns(sql: str) -> list[str]:
    """The names of the outermost SELECT list (or RETURNING list): each expression's alias, else its
    last identifier."""
    depth, start, outer = 0, None, None
    for match in re.finditer(r"\(|\)|\b(SELECT|RETURNING|FROM)\b", sql):
        token = match.group()
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        elif depth == 0 and token in ("SELECT", "RETURNING"):
            start = match.end()
        elif depth == 0 and token == "FROM" and start is not None:
            outer = sql[start:match.start()]
    if outer is None and start is not None:  # RETURNING runs to the end
        outer = sql[start:]
    assert outer is not None, sql
    items, depth, current = [], 0, ""
    for char in outer:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    names = []
    for item in items:
        alias = re.search(r"\bAS\s+(\w+)\s*$", item.strip())
        names.append(alias[1] if alias else re.findall(r"\w+", item)[-1])
    return names


@pytest.mark.parametrize(("query", "row_type"), [
    ("order_outbox", OutboxRow), ("claim_outbox_row", OutgoingRow),
    ("pending_orders", PendingRow), ("recent_audit", AuditRow)])
def test_a_row_type_has_its_querys_columns_in_order(query, row_type):
    assert [f.name for f in fields(row_type)] == returned_columns(queries()[query])


def test_the_column_reader_reads_aliases_and_subqueries():
    sql = "SELECT a.x, coalesce(b, 0) AS y, (SELECT count(*) FROM t) AS z FROM a WHERE c"
    assert returned_columns(sql) == ["x", "y", "z"]


def test_a_row_with_a_column_too_many_or_missing_is_refused():
    row = {"run_id": "r", "host": "h", "command": "check", "checkout_id": None, "http_status": 200,
           "sumup_status": "PAID", "outcome": "completed", "reason": "paid", "duration_ms": 12,
           "created_at": datetime(2026, 12, 1, tzinfo=UTC)}
    assert AuditRow.from_row(row).outcome == "completed"
    with pytest.raises(TypeError):
        AuditRow.from_row({**row, "order_id": 1})
    with pytest.raises(TypeError):
        AuditRow.from_row({k: v for k, v in row.items() if k != "reason"})


def test_an_outbox_row_prints_as_the_query_returned_it():
    row = {"kind": "order_confirmation", "recipients": ["ann@example.com", "bo@example.com"], "status": "sent",
           "attempts": 1, "created_at": datetime(2026, 12, 1, 18, 0, tzinfo=UTC),
           "sent_at": datetime(2026, 12, 1, 18, 1, tzinfo=UTC), "last_error": None,
           "ticket_clock_started_at": None, "time_to_ticket_seconds": 4.5}
    typed = OutboxRow.from_row(row)
    assert json.dumps(asdict(typed), indent=2, default=str) == json.dumps(row, indent=2, default=str)

"""The invariant checker run after every reliability scenario (../shared/DESIGN.md, "The invariants").

`check_invariants(db, smtp, expected_paid=...)` reads the database and the messages the SMTP server
captured and returns a Report; `assert_invariants(report)` fails with every violation listed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser

from payverify.db import Database
from payverify.mail.kinds import CONFIRMATION
from tests.helpers import rows


@dataclass
class Report:
    completed: int = 0
    # completed orders whose ticket count differs from the sum of their item quantities: {id: (tickets, admissions)}
    wrong_ticket_count: dict[int, tuple[int, int]] = field(default_factory=dict)
    # completed orders without exactly one fulfilment row: {id: rows}
    wrong_fulfilment: dict[int, int] = field(default_factory=dict)
    # orders not completed that hold tickets: {id: (status, tickets)}
    tickets_without_completion: dict[int, tuple[str, int]] = field(default_factory=dict)
    duplicate_ticket_codes: int = 0
    # orders SumUp says are PAID (and match) that did not end completed: {id: status}
    paid_not_completed: dict[int, str] = field(default_factory=dict)
    # completed orders of which no confirmation reached the SMTP server
    completed_not_mailed: list[int] = field(default_factory=list)
    messages_captured: int = 0
    # extra copies of a Message-ID the SMTP server captured more than once (2 copies: 1 duplicate)
    duplicate_mails: int = 0


def message_ids(smtp) -> Counter:
    """How often each Message-ID reached the SMTP server."""
    parser = BytesHeaderParser()
    return Counter((parser.parsebytes(m.data)["Message-ID"] or "").strip() for m in smtp.messages)


def check_invariants(db: Database, smtp, *, expected_paid: Iterable[int] = ()) -> Report:
    report = Report()
    orders = rows(db, """
        SELECT o.id, o.status,
               (SELECT count(*) FROM tickets_ticket t WHERE t.order_id = o.id) AS tickets,
               (SELECT coalesce(sum(quantity), 0) FROM orders_orderitem i WHERE i.order_id = o.id) AS admissions,
               (SELECT count(*) FROM payverify_fulfilment f WHERE f.order_id = o.id) AS fulfilments
        FROM orders_order o ORDER BY o.id""")
    status = {o["id"]: o["status"] for o in orders}
    for o in orders:
        if o["status"] == "completed":
            report.completed += 1
            if o["tickets"] != o["admissions"]:
                report.wrong_ticket_count[o["id"]] = (o["tickets"], int(o["admissions"]))
            if o["fulfilments"] != 1:
                report.wrong_fulfilment[o["id"]] = o["fulfilments"]
        elif o["tickets"]:
            report.tickets_without_completion[o["id"]] = (o["status"], o["tickets"])
    report.duplicate_ticket_codes = int(rows(db, """
        SELECT coalesce(sum(n - 1), 0) AS d FROM (SELECT count(*) AS n FROM tickets_ticket GROUP BY code) c""")[0]["d"])
    for order_id in expected_paid:
        if status.get(order_id) != "completed":
            report.paid_not_completed[order_id] = status.get(order_id, "missing")

    captured = message_ids(smtp)
    report.messages_captured = sum(captured.values())
    report.duplicate_mails = sum(n - 1 for n in captured.values() if n > 1)
    confirmations: dict[int, set[str]] = {}
    for r in rows(db, "SELECT order_id, message_id FROM payverify_outbox WHERE kind = %(kind)s", kind=CONFIRMATION):
        confirmations.setdefault(r["order_id"], set()).add(r["message_id"].strip())
    report.completed_not_mailed = [oid for oid, st in status.items() if st == "completed"
                                   and not any(captured[mid] for mid in confirmations.get(oid, ()))]
    return report


def assert_invariants(report: Report, *, max_duplicate_mails: int = 0, log: str = "") -> None:
    """Fails listing every broken invariant, followed by the log of the run that should have converged."""
    problems = []
    if report.wrong_ticket_count:
        problems.append(f"completed orders with wrong ticket counts (tickets, admissions): {report.wrong_ticket_count}")
    if report.wrong_fulfilment:
        problems.append(f"completed orders without exactly one fulfilment row: {report.wrong_fulfilment}")
    if report.tickets_without_completion:
        problems.append(f"tickets on orders that are not completed: {report.tickets_without_completion}")
    if report.duplicate_ticket_codes:
        problems.append(f"{report.duplicate_ticket_codes} duplicate ticket codes")
    if report.paid_not_completed:
        problems.append(f"paid orders not completed: {report.paid_not_completed}")
    if report.completed_not_mailed:
        problems.append(f"completed orders never mailed: {report.completed_not_mailed}")
    if report.duplicate_mails > max_duplicate_mails:
        problems.append(f"{report.duplicate_mails} duplicate mails (allowed {max_duplicate_mails})")
    assert not problems, "invariants broken:\n  " + "\n  ".join(problems) + (f"\nthe run's log:\n{log}" if log else "")

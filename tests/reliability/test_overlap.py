"""Overlap: four `payverify sweep` processes at once over a burst of mixed outcomes.

The full size, 1,000 orders, runs in CI (about 25 s here); PAYVERIFY_RELIABILITY_SIZE changes it. A
smaller burst runs again through PgBouncer in transaction pooling (the same invariants, in less time).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta

import pytest

from tests.conftest import ROOT
from tests.helpers import rows, scalar

SIZE = int(os.environ.get("PAYVERIFY_RELIABILITY_SIZE", "1000"))
POOLED_SIZE = max(10, SIZE // 4)


@pytest.mark.parametrize(("pooled", "size"), [(False, SIZE), (True, POOLED_SIZE)], ids=["direct", "pgbouncer"],
                         indirect=["pooled"])
def test_four_overlapping_sweeps_keep_every_invariant(size, seed, db, env, sumup, smtp):
    """4 sweeps at once: 0 duplicate tickets, 0 tickets for unpaid orders, every paid order completed with
    exactly its tickets, 0 duplicate mails, at most 1.05 SumUp GETs per order."""
    artist = seed.artist()
    event = seed.event(artist)
    tt = seed.ticket_type(event, "Standing", "12.50")
    expected = {}
    for i in range(size):
        kind = ("paid", "paid", "paid", "paid", "paid", "paid", "mismatch", "failed", "pending", "expired")[i % 10]
        how = {
            "paid": {"tickets": 1 + i % 3},
            "mismatch": {"tickets": 2, "sumup_amount": "1.00"},
            "failed": {"sumup_status": "FAILED", "age": timedelta(minutes=45)},
            "pending": {"sumup_status": "PENDING"},
            "expired": {"sumup_status": "EXPIRED"},
        }[kind]
        order = seed.order([(tt, how.pop("tickets", 1))], event_id=event, email=f"fan{i}@example.com", **how)
        expected[order.id] = (kind, order.admissions)

    procs = [subprocess.Popen([sys.executable, "-m", "payverify", "sweep"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err

    final = {r["id"]: r for r in rows(db, """
        SELECT o.id, o.status, (SELECT count(*) FROM tickets_ticket t WHERE t.order_id = o.id) AS tickets
        FROM orders_order o""")}
    want_status = {"paid": "completed", "mismatch": "requires_manual_review", "failed": "failed",
                   "pending": "pending_verification", "expired": "expired"}
    for order_id, (kind, admissions) in expected.items():
        assert final[order_id]["status"] == want_status[kind], (order_id, kind)
        assert final[order_id]["tickets"] == (admissions if kind == "paid" else 0), (order_id, kind)
    assert scalar(db, "SELECT count(*) - count(DISTINCT code) FROM tickets_ticket") == 0
    paid = sum(1 for k, _ in expected.values() if k == "paid")
    assert scalar(db, "SELECT count(*) FROM payverify_fulfilment") == paid
    ids = Counter(m.parsed()["Message-ID"].strip() for m in smtp.messages)
    assert [mid for mid, n in ids.items() if n > 1] == []
    paid_mail = Counter(r for m in smtp.messages for r in m.rcpt_tos if r.startswith("fan"))
    for order_id, (kind, _) in expected.items():
        if kind == "paid":
            assert paid_mail[rows(db, "SELECT email FROM orders_order WHERE id = %(i)s", i=order_id)[0]["email"]] == 1
    assert sumup.get_count() <= size * 1.05

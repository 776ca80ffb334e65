"""Overlapping runs: real `payverify sweep` processes at once over the same orders."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT
from tests.helpers import scalar


def start_sweeps(env, n):
    return [subprocess.Popen([sys.executable, "-m", "payverify", "sweep"], env=env, cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n)]


def test_two_sweeps_issue_every_ticket_exactly_once(seed, db, env, sumup):
    """Two sweeps at once over 300 paid orders: every order completed with exactly its tickets, once."""
    artist = seed.artist()
    event = seed.event(artist)
    standing = seed.ticket_type(event, "Standing", "12.50")
    seated = seed.ticket_type(event, "Seated", "30.00")
    orders = [seed.order([(standing, 1 + i % 3), (seated, i % 2)] if i % 2 else [(standing, 1 + i % 3)],
                         event_id=event) for i in range(300)]
    admissions = sum(o.admissions for o in orders)

    procs = start_sweeps(env, 2)
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err

    assert scalar(db, "SELECT count(*) FROM orders_order WHERE status = 'completed'") == 300
    assert scalar(db, "SELECT count(*) FROM tickets_ticket") == admissions
    # Per order: tickets = admissions (sum of item quantities), never more.
    assert scalar(db, """
        SELECT count(*) FROM orders_order o
        WHERE (SELECT count(*) FROM tickets_ticket t WHERE t.order_id = o.id)
           <> (SELECT sum(quantity) FROM orders_orderitem i WHERE i.order_id = o.id)""") == 0
    assert scalar(db, "SELECT count(*) FROM payverify_fulfilment") == 300
    assert scalar(db, "SELECT count(*) FROM payverify_outbox WHERE kind = 'order_confirmation'") == 300
    # The leases kept the two runs apart: (almost) no order was asked about twice.
    assert sumup.get_count() <= 300 * 1.05

"""Memory of a long-running `payverify watch` stays flat: 10,000 returning orders through one process,
its peak RSS after the first 2,000 against its peak RSS after all of them."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from payverify.db import Database
from payverify_dev.sumup_server import FakeSumUp, checkout_body
from tests.conftest import ROOT
from tests.helpers import scalar

PRICE = Decimal("12.50")


def returning_orders(db: Database, sumup: FakeSumUp, *, event_id: int, ticket_type: int, merchant: str,
                     count: int, tag: str) -> list[int]:
    """`count` orders that just came back from SumUp (pending_verification, paid), in one statement."""
    with db.transaction() as tx:
        rows = tx.fetch_sql("""
            WITH o AS (
                INSERT INTO orders_order (order_number, event_id, email, first_name, last_name, total, currency,
                                          status, sumup_checkout_id, created_at, updated_at)
                SELECT 'JE-' || %(tag)s || lpad(g::text, 6, '0'), %(event)s, 'fan' || g || '@example.com', 'Alex',
                       'Morgan', %(price)s, 'GBP', 'pending_verification', gen_random_uuid()::text, now(), now()
                FROM generate_series(1, %(n)s) g
                RETURNING id, order_number, sumup_checkout_id),
            i AS (INSERT INTO orders_orderitem (order_id, ticket_type_id, quantity, unit_price)
                  SELECT id, %(tt)s, 1, %(price)s FROM o)
            SELECT id, order_number, sumup_checkout_id FROM o""",
            {"tag": tag, "event": event_id, "price": PRICE, "n": count, "tt": ticket_type})
    for row in rows:
        sumup.add_checkout(checkout_body(row["sumup_checkout_id"], row["order_number"], PRICE, "GBP", merchant,
                                         "PAID"), owner=merchant)
    return [row["id"] for row in rows]


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def completed(db: Database, ids: list[int]) -> int:
    return scalar(db, "SELECT count(*) FROM orders_order WHERE id = ANY(%(ids)s) AND status = 'completed'", ids=ids)


def wait_for(db: Database, ids: list[int], within: float, proc: subprocess.Popen) -> None:
    started = time.monotonic()
    while completed(db, ids) < len(ids):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() - started < within, f"{completed(db, ids)} of {len(ids)} completed"
        time.sleep(0.5)


def test_ten_thousand_orders_through_one_watch_keep_memory_flat(seed, sumup, db, env):
    artist = seed.artist()
    event = seed.event(artist)
    ticket_type = seed.ticket_type(event, price=PRICE)
    # Mail is left out (no SMTP server): rendering 10,000 confirmations would only add minutes.
    proc = subprocess.Popen([sys.executable, "-m", "payverify", "watch"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**env, "PAYVERIFY_WATCH_INTERVAL": "0.2", "PAYVERIFY_SMTP_URL": ""})
    try:
        early = returning_orders(db, sumup, event_id=event, ticket_type=ticket_type, merchant=artist.merchant_code,
                                 count=2000, tag="A")
        wait_for(db, early, 300, proc)
        early_peak = peak_rss_kb(proc.pid)
        late = returning_orders(db, sumup, event_id=event, ticket_type=ticket_type, merchant=artist.merchant_code,
                                count=8000, tag="B")
        wait_for(db, late, 900, proc)
        late_peak = peak_rss_kb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert scalar(db, "SELECT count(*) FROM tickets_ticket") == 10000
    assert scalar(db, "SELECT count(*) FROM payverify_fulfilment") == 10000
    # Flat: four times the orders after the first 2,000 add at most a tenth to the peak.
    assert late_peak <= early_peak * 1.10, (early_peak, late_peak)

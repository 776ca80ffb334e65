"""A large history: 10,000 transactions in one account, read in one pass (each page once) with memory
that does not grow with the history (peak RSS of the real process against a run over 1,000)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from payverify_dev.seed import PLATFORM_MERCHANT
from tests.conftest import ROOT

PAGE = 100


def add_sales(sumup, count: int, start: datetime, prefix: str) -> None:
    for i in range(count):
        # Mostly the merch stand, some stray online payments: every one is looked at.
        online = i % 10 == 0
        sumup.add_transaction(PLATFORM_MERCHANT, transaction_code=f"{prefix}{i:07d}", amount=Decimal("3.50"),
                              payment_type="ECOM" if online else "POS", timestamp=start + timedelta(seconds=i))


def test_ten_thousand_transactions_one_pass_flat_memory(seed, db, env, sumup):
    start = datetime.now(UTC) - timedelta(hours=30)  # older than the rescue window: every payment is judged
    add_sales(sumup, 1_000, start, "TA")
    small = _run(env, sumup)
    add_sales(sumup, 9_000, start, "TB")
    large = _run(env, sumup)
    assert large["transactions"] == 10_000
    assert large["pages"] == 10_000 // PAGE  # each page once: one pass
    assert large["paid_without_order"] == 1_000
    assert large["rss_kb"] <= 1.3 * small["rss_kb"], (small, large)


def _run(env, sumup) -> dict:
    before = len(sumup.history_requests(PLATFORM_MERCHANT))
    proc = subprocess.run([sys.executable, "-c", RSS_PROBE, "reconcile", "--json", "--since", "2d", "--dry-run"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rss_kb, _, out = proc.stdout.partition("\n")
    output = json.loads(out)
    return {"rss_kb": int(rss_kb), "transactions": output["accounts"][0]["transactions"],
            "pages": len(sumup.history_requests(PLATFORM_MERCHANT)) - before,
            "paid_without_order": sum(d["kind"] == "paid_without_completed_order" for d in output["discrepancies"])}


# Runs payverify in a child and prints its peak RSS (KiB) on the first line, then its output.
RSS_PROBE = """
import os, subprocess, sys
child = subprocess.Popen([sys.executable, "-m", "payverify", *sys.argv[1:]], stdout=subprocess.PIPE)
out = child.stdout.read()
_, status, usage = os.wait4(child.pid, 0)
if status != 0:
    sys.exit(f"payverify exited {status}")
sys.stdout.write(f"{usage.ru_maxrss}\\n")
sys.stdout.write(out.decode())
"""

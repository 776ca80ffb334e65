"""`payverify pending` (the on-call view) and a sweep run by a person on a terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from datetime import timedelta

from payverify_dev.sumup_server import Scripted
from tests.conftest import ROOT


def test_pending_lists_orders_awaiting_verification_or_review(seed, sumup, run_payverify):
    """pending shows awaiting and review orders with age, artist, SumUp's last answer, checks and mail
    state; completed orders and pending orders without a checkout are not listed."""
    artist = seed.artist("Lua Verde")
    event = seed.event(artist)
    tt = seed.ticket_type(event)
    waiting = seed.order([(tt, 1)], event_id=event, sumup_status="PENDING", age=timedelta(minutes=50))
    review = seed.order([(tt, 2)], event_id=event, sumup_amount="1.00")
    done = seed.order([(tt, 1)], event_id=event)
    no_checkout = seed.order([(tt, 1)], event_id=event, status="pending", checkout_id=None)
    assert run_payverify("sweep", extra_env={"PAYVERIFY_SMTP_URL": "smtp://127.0.0.1:1"}).returncode == 0

    result = run_payverify("pending")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert done.order_number not in result.stdout and no_checkout.order_number not in result.stdout
    row = next(line for line in lines if waiting.order_number in line)
    assert "pending_verification" in row and "50m" in row and "Lua Verde" in row and "PENDING" in row
    review_row = next(line for line in lines if review.order_number in line)
    assert "requires_manual_review" in review_row and "1 queued" in review_row  # SMTP was down

    data = json.loads(run_payverify("pending", "--json").stdout)
    by_number = {o["order_number"]: o for o in data}
    assert set(by_number) == {waiting.order_number, review.order_number}
    assert by_number[waiting.order_number]["checks"] == 1
    assert by_number[waiting.order_number]["last_sumup_status"] == "PENDING"


def test_pending_stuck_only(seed, run_payverify):
    """--stuck lists only orders in pending_verification for longer than PAYVERIFY_STUCK_MINUTES."""
    artist = seed.artist()
    event = seed.event(artist)
    tt = seed.ticket_type(event)
    old = seed.order([(tt, 1)], event_id=event, age=timedelta(minutes=45))
    young = seed.order([(tt, 1)], event_id=event, age=timedelta(minutes=5))
    out = run_payverify("pending", "--stuck").stdout
    assert old.order_number in out and young.order_number not in out
    out = run_payverify("pending", "--stuck", extra_env={"PAYVERIFY_STUCK_MINUTES": "60"}).stdout
    assert "No orders stuck" in out


def run_on_terminal(args, env, timeout=120):
    """Run payverify with stdout and stderr on a pseudo-terminal; return (exit status, everything shown)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "payverify", *args], env={**env, "COLUMNS": "120"}, cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
    os.close(follower)
    shown = b""
    while True:
        ready, _, _ = select.select([leader], [], [], timeout)
        if not ready:
            proc.kill()
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    return proc.wait(timeout=timeout), shown.decode("utf-8", "replace")


def test_replay_on_a_terminal_shows_progress_and_a_summary(seed, sumup, env):
    """On a terminal `sweep --since` shows a progress bar and ends with a summary table by outcome."""
    artist = seed.artist()
    event = seed.event(artist)
    tt = seed.ticket_type(event)
    for _ in range(5):
        seed.order([(tt, 1)], event_id=event)
    failed = seed.order([(tt, 1)], event_id=event, status="failed", age=timedelta(hours=30))
    unknown = seed.order([(tt, 1)], event_id=event)
    sumup.script(unknown.checkout_id, *[Scripted(status=503)] * 3)
    status, shown = run_on_terminal(["sweep", "--since", "48h"], env)
    assert status == 0, shown
    assert "Verifying" in shown and "100%" in shown
    assert "7 of 7 due orders verified" in shown
    summary = shown[shown.index("outcome"):]
    assert "completed" in summary and " 6" in summary and "unchanged" in summary
    assert failed.order_number not in summary  # a summary, not a list

"""Benchmark: time to ticket, from the customer's return (or the run's start) to the confirmation
accepted by the SMTP server, under cron and under `payverify watch`.

- cron burst: N paid orders, SumUp latency L, C requests in flight, one real `payverify sweep`:
  seconds from the run's start to the last confirmation accepted, beside the bound N x L / C;
- watch, in the site's real flow: each order is created `pending` with its checkout 1 to 120 s before
  the customer comes back (the site then sets `pending_verification`); SumUp says PAID at the return
  for 80 % of them, and PENDING for another 0-3 s (uniform) for the rest. Steady: 3 returns a second
  for 100 s (p50 and p95 from return to accepted); burst: 1,000 returns in 10 s (p95 and the last);
  both report SumUp GETs per order.
Each counts duplicates and losses: one confirmation per order, one fulfilment, its tickets.

    .venv-3.11/bin/python benchmarks/time_to_ticket.py             # all three (about eight minutes)
    .venv-3.11/bin/python benchmarks/time_to_ticket.py --only cron

Uses PAYVERIFY_TEST_DATABASE_URL's server when set, otherwise an embedded throwaway Postgres.
Exits non-zero if a target is missed.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path

from drain import postgres, scratch_database, seed

from payverify.db import Database
from payverify.secret import Secret
from payverify_dev.seed import PLATFORM_KEY, PLATFORM_MERCHANT
from payverify_dev.smtp_capture import SmtpCapture
from payverify_dev.sumup_server import FakeSumUp, checkout_body

ROOT = Path(__file__).resolve().parent.parent
PRICE = Decimal("12.50")
GETS_PER_ORDER = 1.5  # SumUp GETs per order in the watch runs, at most


def environment(url: str, sumup: FakeSumUp, smtp: SmtpCapture, workdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAYVERIFY_", "SUMUP_"))}
    env.update({"PAYVERIFY_DATABASE_URL": url, "SUMUP_API_BASE_URL": sumup.url, "SUMUP_API_KEY": PLATFORM_KEY,
                "PAYVERIFY_SMTP_URL": smtp.url(), "PAYVERIFY_MAIL_FROM": "tickets@bench.example",
                "PAYVERIFY_SUMUP_RATE": "0", "PAYVERIFY_LOG_FILE": str(workdir / "bench.log"),
                "PAYVERIFY_MAX_ORDERS_PER_RUN": "5000", **extra})
    return env


def audit(db: Database, expected: int) -> dict[str, int]:
    """Duplicates and losses: every order one confirmation sent, one fulfilment, two tickets... or not."""
    with db.transaction() as tx:
        row = tx.fetch_sql("""
            SELECT (SELECT count(*) FROM orders_order WHERE status = 'completed') AS completed,
                   (SELECT count(*) FROM payverify_fulfilment) AS fulfilled,
                   (SELECT count(*) FROM payverify_outbox WHERE kind = 'order_confirmation' AND status = 'sent')
                       AS mailed,
                   (SELECT count(*) FROM (SELECT order_id FROM payverify_outbox WHERE kind = 'order_confirmation'
                                          GROUP BY order_id HAVING count(*) > 1) d) AS duplicated""")[0]
    row["expected"] = expected
    return row


def clean(counts: dict[str, int], smtp: SmtpCapture) -> bool:
    n = counts["expected"]
    return (counts["completed"] == counts["fulfilled"] == counts["mailed"] == n and counts["duplicated"] == 0
            and len(smtp.messages) == n)


# ---- cron burst ------------------------------------------------------------------------------------
def cron_burst(server: str, n: int, latency: float, concurrency: int) -> bool:
    with ExitStack() as stack, tempfile.TemporaryDirectory() as work:
        url = stack.enter_context(scratch_database(server))
        sumup = stack.enter_context(FakeSumUp(latency=latency))
        smtp = stack.enter_context(SmtpCapture())
        seed(url, sumup, n)
        env = environment(url, sumup, smtp, Path(work), PAYVERIFY_CONCURRENCY=str(concurrency))
        started = time.time()
        done = subprocess.run([sys.executable, "-m", "payverify", "sweep"], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise SystemExit(f"payverify sweep failed: {done.stderr}")
        with Database.connect(Secret(url)) as db:
            with db.transaction() as tx:
                times = tx.fetch_sql("SELECT max(sent_at) AS last, max(created_at) AS queued, "
                                     "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at)) AS mid "
                                     "FROM payverify_outbox WHERE kind = 'order_confirmation'")[0]
                last = times["last"]
            counts = audit(db, n)
        took = last.timestamp() - started
        bound = n * latency / concurrency
        met = took <= 1.5 * bound and clean(counts, smtp)
        print(f"cron burst N={n} L={latency * 1000:.0f} ms C={concurrency}: last confirmation accepted "
              f"{took:.1f} s after the run's start (bound N*L/C = {bound:.1f} s, target <= {1.5 * bound:.1f} s) "
              f"-> {'MET' if met else 'MISSED'}; last order settled at {times['queued'].timestamp() - started:.1f} s, "
              f"half the confirmations accepted by {times['mid'] - started:.1f} s; {counts}")
        return met


# ---- watch -------------------------------------------------------------------------------------------
class Site:
    """The site's real flow: an order is created `pending` with its SumUp checkout before the customer
    goes to pay, and set `pending_verification` (with `updated_at`) when their browser comes back."""

    def __init__(self, url: str, sumup: FakeSumUp) -> None:
        self.db = Database.connect(Secret(url))
        self.sumup = sumup
        self.returned: dict[int, float] = {}  # order id -> updated_at of its return (the database's clock)
        self.ids: dict[int, int] = {}  # the benchmark's number -> order id
        with self.db.transaction() as tx:
            artist = tx.fetch_sql("INSERT INTO artists_artist (name, email, sumup_merchant_code, created_at) "
                                  "VALUES ('Bench Band', 'band@example.com', %(m)s, now()) RETURNING id",
                                  {"m": PLATFORM_MERCHANT})[0]["id"]
            self.event = tx.fetch_sql(
                "INSERT INTO events_event (artist_id, title, venue, starts_at, ends_at, created_at) VALUES "
                "(%(a)s, 'On-sale Night', 'Fort Regent', now() + interval '30 days', now() + interval '31 days', "
                "now()) RETURNING id", {"a": artist})[0]["id"]
            self.ticket_type = tx.fetch_sql("INSERT INTO events_tickettype (event_id, name, price) VALUES "
                                            "(%(e)s, 'Standing', %(p)s) RETURNING id",
                                            {"e": self.event, "p": PRICE})[0]["id"]
        sumup.add_api_key(PLATFORM_KEY, PLATFORM_MERCHANT)

    @staticmethod
    def _names(i: int) -> tuple[str, str]:
        return f"W-{i:06d}", f"00000000-0000-4000-8000-{i:012d}"

    def _checkout(self, i: int, status: str) -> dict:
        number, checkout = self._names(i)
        return checkout_body(checkout, number, PRICE, "GBP", PLATFORM_MERCHANT, status)

    def create(self, i: int) -> None:
        """The customer is sent to SumUp: the order and its checkout exist, pending."""
        number, checkout = self._names(i)
        self.sumup.add_checkout(self._checkout(i, "PENDING"))
        with self.db.transaction() as tx:
            self.ids[i] = tx.fetch_sql("""
                WITH o AS (INSERT INTO orders_order (order_number, event_id, email, first_name, last_name, total,
                                                     currency, status, sumup_checkout_id, created_at, updated_at)
                           VALUES (%(n)s, %(e)s, %(m)s, 'Fan', 'Bench', %(p)s, 'GBP', 'pending', %(c)s, now(), now())
                           RETURNING id),
                     i AS (INSERT INTO orders_orderitem (order_id, ticket_type_id, quantity, unit_price)
                           SELECT id, %(t)s, 1, %(p)s FROM o)
                SELECT id FROM o""", {"n": number, "e": self.event, "m": f"fan{i}@example.com", "p": PRICE,
                                      "c": checkout, "t": self.ticket_type})[0]["id"]

    def pays(self, i: int) -> None:
        self.sumup.update_checkout(self._names(i)[1], **self._checkout(i, "PAID"))

    def customer_returns(self, i: int) -> None:
        with self.db.transaction() as tx:
            row = tx.fetch_sql("UPDATE orders_order SET status = 'pending_verification', updated_at = now() "
                               "WHERE id = %(id)s RETURNING id, updated_at", {"id": self.ids[i]})[0]
        self.returned[row["id"]] = row["updated_at"].timestamp()


def timeline(count: int, seconds: float, pending_share: float, rng: random.Random) -> list[tuple[float, int, str]]:
    """(seconds from the first creation, order, what happens), in order: each customer is sent to SumUp
    1 to 120 s before they come back; returns are evenly spread over `seconds`; SumUp says PAID before
    the return, or for `pending_share` of them 0 to 3 s after it."""
    events = []
    for i in range(count):
        back = 120 + i * seconds / count
        events.append((back - rng.uniform(1, 120), i, "create"))
        late = rng.uniform(0, 3) if rng.random() < pending_share else 0.0
        events.append((back + late if late else back - 0.001, i, "pays"))
        events.append((back, i, "returns"))
    return sorted(events)


def watch_run(server: str, name: str, *, count: int, seconds: float, pending_share: float,
              p50_target: float | None, p95_target: float, max_target: float | None) -> bool:
    rng = random.Random(42)
    with ExitStack() as stack, tempfile.TemporaryDirectory() as work:
        url = stack.enter_context(scratch_database(server))
        sumup = stack.enter_context(FakeSumUp(latency=0.1))
        smtp = stack.enter_context(SmtpCapture())
        site = Site(url, sumup)
        proc = subprocess.Popen([sys.executable, "-m", "payverify", "watch"], cwd=ROOT,
                                env=environment(url, sumup, smtp, Path(work)),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(2)  # started and polling
            began = time.monotonic()
            act = {"create": site.create, "pays": site.pays, "returns": site.customer_returns}
            for at, i, what in timeline(count, seconds, pending_share, rng):
                pause = began + at - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                act[what](i)
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and len(smtp.messages) < count:
                time.sleep(0.5)
            with site.db.transaction() as tx:
                sent = tx.fetch_sql("SELECT order_id, sent_at FROM payverify_outbox "
                                    "WHERE kind = 'order_confirmation' AND status = 'sent'")
            counts = audit(site.db, count)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=90)
            site.db.close()
        if proc.returncode != 0:
            raise SystemExit(f"payverify watch exited {proc.returncode}: {err}")
        waits = sorted(r["sent_at"].timestamp() - site.returned[r["order_id"]] for r in sent)
        p50 = statistics.median(waits)
        p95 = waits[int(0.95 * (len(waits) - 1))]
        gets = sumup.get_count() / count
        met = (p95 <= p95_target and (p50_target is None or p50 <= p50_target)
               and (max_target is None or waits[-1] <= max_target) and gets <= GETS_PER_ORDER
               and clean(counts, smtp))
        targets = ", ".join([f"p95 <= {p95_target:g} s"] + ([f"p50 <= {p50_target:g} s"] if p50_target else [])
                            + ([f"max <= {max_target:g} s"] if max_target else []) + [f"GETs <= {GETS_PER_ORDER:g}"])
        print(f"watch {name}: {count} returns in {seconds:g} s, each 1-120 s after its order was created pending "
              f"({pending_share:.0%} PENDING for 0-3 s after the return): p50 {p50:.2f} s, p95 {p95:.2f} s, "
              f"last {waits[-1]:.2f} s, SumUp GETs per order {gets:.2f} ({targets}) "
              f"-> {'MET' if met else 'MISSED'}; {counts}")
        return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["cron", "steady", "burst"])
    args = parser.parse_args()
    results = []
    with postgres() as server:
        if args.only in (None, "cron"):
            results.append(cron_burst(server, 1000, 0.1, 8))
        if args.only in (None, "steady"):
            results.append(watch_run(server, "steady", count=300, seconds=100, pending_share=0.2,
                                     p50_target=1, p95_target=3, max_target=None))
        if args.only in (None, "burst"):
            results.append(watch_run(server, "burst", count=1000, seconds=10, pending_share=0.2,
                                     p50_target=None, p95_target=10, max_target=30))
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()

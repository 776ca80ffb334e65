"""Benchmark: years of history cost nothing.

Builds a site with years of history on a scratch database (payverify_dev/history.py: by default a
million orders, and a million rows in each of payverify's audit, outbox, runs and order state), and
beside it an empty site with the same catalogue. On both, then on a copy of the big one without the
index on orders_order.status (a site whose Django model lacks db_index=True), it times real
`payverify` processes against the SumUp simulator and an SMTP capture, each --repeat times (median,
wall time of the process):

- a sweep with nothing due; a sweep settling --due orders (re-seeded before each run);
- `payverify pending --json`; `payverify check ORDER` for a due order (re-seeded each time) and for
  a historical one;
- one `payverify watch` poll: its query (watch_new_orders) as the watch runs it, in a loop;

and the main queries of each (scale_queries.py) through a connection of its own. Target: every
operation on the big site within 1.2 x its time on the empty one or 0.1 s more, whichever is larger;
a watch poll under 10 ms. Then `payverify doctor` on the site without the index: its line about
indexes; and reconcile's reads on the big site again once it has the two indexes doctor asks a
reconciling site for (no target: reconcile runs daily). Exits non-zero if a target is missed.

    .venv-3.11/bin/python benchmarks/scale.py                    # a million orders (about 10 minutes)
    .venv-3.11/bin/python benchmarks/scale.py --orders 100000 --repeat 3
    .venv-3.11/bin/python benchmarks/scale.py --explain          # and the plans of those queries

Uses PAYVERIFY_TEST_DATABASE_URL's server when set (as its owner: a superuser loads the history
faster), otherwise an embedded throwaway Postgres.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import scale_queries as sq
from drain import postgres, scratch_database

from payverify.db import Database
from payverify.secret import Secret
from payverify_dev.history import add_due_orders, add_reconcile_indexes, build_history
from payverify_dev.seed import PLATFORM_KEY
from payverify_dev.smtp_capture import SmtpCapture
from payverify_dev.sumup_server import FakeSumUp

ROOT = Path(__file__).resolve().parent.parent
STATUS_INDEXES = ("orders_order_status_445594e5", "orders_order_status_445594e5_like")
WATCH_POLL_TARGET = 0.010
WATCH_POLLS = 50
HOST = socket.gethostname()  # what payverify's runs here record, and so the history's


@dataclass
class Site:
    label: str
    runs: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # operation: seconds
    sql: dict[str, float] = field(default_factory=dict)  # query group: median seconds
    order_number: str = ""  # the completed order check looks at (and the queries are timed with)
    doctor: list[str] = field(default_factory=list)
    reconcile_indexed: float | None = None  # reconcile's reads once the site has the indexes it wants

    def median(self, operation: str) -> float:
        return statistics.median(self.runs[operation])


def operations(due: int) -> dict[str, str]:
    return {"sweep_idle": "sweep, nothing due", "sweep_due": f"sweep settling {due} due",
            "pending": "pending --json", "check_due": "check ORDER (due)", "check_old": "check ORDER (historical)",
            "watch_poll": "watch poll (its query)"}


RECONCILE_GROUP = "reconcile's reads"
# What the SQL table times: a command's main query, or all it reads.
SQL_GROUPS = {
    "select_due_orders": {"select_due_orders": sq.SWEEP["select_due_orders"]},
    "an idle sweep's reads": sq.SWEEP,
    "pending_orders": sq.PENDING,
    "check's reads": sq.CHECK,
    "watch_new_orders": sq.WATCH,
    RECONCILE_GROUP: sq.RECONCILE,
}


# ---- the databases ---------------------------------------------------------------------------------
def _admin(server_url: str, sql: str) -> None:
    with Database.connect(Secret(server_url), statement_timeout_ms=0) as db:
        db._conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with db._conn.cursor() as cur:
            cur.execute(sql)


def _with_dbname(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@contextmanager
def copy_of(server_url: str, url: str) -> Iterator[str]:
    """A copy of the database at `url` (nobody may be connected to it), dropped afterwards. File by
    file where the server can (Postgres 15: not through the WAL, which would write it all twice)."""
    name = f"pv_bench_{uuid.uuid4().hex[:8]}"
    with Database.connect(Secret(server_url)) as db, db.transaction() as tx:
        version = tx.fetch_sql("SELECT current_setting('server_version_num')::int AS v")[0]["v"]
    strategy = " STRATEGY = FILE_COPY" if version >= 150000 else ""
    _admin(server_url, f"CREATE DATABASE {name} TEMPLATE {urlsplit(url).path.lstrip('/')}{strategy}")
    try:
        yield _with_dbname(server_url, name)
    finally:
        _admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def drop_status_index(url: str) -> None:
    with Database.connect(Secret(url)) as db, db.transaction() as tx:
        for index in STATUS_INDEXES:
            tx.script(f"DROP INDEX {index}")


# ---- payverify processes -----------------------------------------------------------------------------
def environment(url: str, sumup: FakeSumUp, smtp: SmtpCapture, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAYVERIFY_", "SUMUP_"))
           and k != "PYTHONDONTWRITEBYTECODE"}
    env.update({"PAYVERIFY_DATABASE_URL": url, "SUMUP_API_BASE_URL": sumup.url, "SUMUP_API_KEY": PLATFORM_KEY,
                "PAYVERIFY_SMTP_URL": smtp.url(), "PAYVERIFY_MAIL_FROM": "tickets@bench.example",
                "PAYVERIFY_SUMUP_RATE": "0", "PAYVERIFY_LOG_FILE": str(workdir / "payverify.log"),
                # As README's deployment has it: a sweep writes the metrics too (and reads what they need).
                "PAYVERIFY_METRICS_FILE": str(workdir / "payverify.prom")})
    return env


def payverify(env: dict[str, str], *args: str, ok: tuple[int, ...] = (0,)) -> tuple[float, str]:
    """Wall seconds of one `payverify ...` process, and its stdout."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "payverify", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    took = time.monotonic() - started
    if done.returncode not in ok:
        raise SystemExit(f"payverify {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return took, done.stdout + done.stderr


def statuses(url: str, order_ids: list[int]) -> set[str]:
    with Database.connect(Secret(url)) as db, db.transaction() as tx:
        return {r["status"] for r in tx.fetch_sql("SELECT status FROM orders_order WHERE id = ANY(%(ids)s)",
                                                  {"ids": order_ids})}


def historical_order(url: str) -> str | None:
    """A completed order from the middle of the history (None: no history), of an artist on the
    platform's key: the simulator knows that key, not the OAuth artists' tokens (check would stop at
    SumUp refusing them, exit 7)."""
    with Database.connect(Secret(url)) as db, db.transaction() as tx:
        found = tx.fetch_sql("""
            SELECT o.order_number FROM orders_order o
            JOIN events_event e ON e.id = o.event_id JOIN artists_artist a ON a.id = e.artist_id
            WHERE o.status = 'completed' AND o.paid_at < now() - interval '1 day'
              AND o.id >= (SELECT (min(id) + max(id)) / 2 FROM orders_order)
              AND a.sumup_access_token IS NULL AND a.sumup_refresh_token IS NULL
            ORDER BY o.id LIMIT 1""")
    return found[0]["order_number"] if found else None


def one_round(site: Site, url: str, env: dict[str, str], sumup: FakeSumUp, *, due: int) -> None:
    """Each operation once, into site.runs."""
    site.runs["sweep_idle"].append(payverify(env, "sweep")[0])
    with Database.connect(Secret(url)) as db:
        orders = add_due_orders(db, sumup, due)
    site.runs["sweep_due"].append(payverify(env, "sweep")[0])
    if statuses(url, [o.id for o in orders]) != {"completed"}:
        raise SystemExit(f"{site.label}: the sweep did not settle the {due} due orders")
    site.runs["pending"].append(payverify(env, "pending", "--json")[0])
    with Database.connect(Secret(url)) as db:
        (order,) = add_due_orders(db, sumup, 1)
    site.runs["check_due"].append(payverify(env, "check", order.order_number)[0])
    if statuses(url, [order.id]) != {"completed"}:
        raise SystemExit(f"{site.label}: check did not settle its due order")
    # A completed order: on the empty site the one just settled. SumUp does not know a historical
    # order's checkout: check says so (exit 0) and changes nothing, as it does for the settled one.
    site.order_number = historical_order(url) or order.order_number
    site.runs["check_old"].append(payverify(env, "check", site.order_number)[0])


def time_queries(site: Site, url: str, *, repeat: int) -> None:
    ctx = sq.context(url, HOST, site.order_number)
    site.runs["watch_poll"].append(sq.timed(url, ctx, sq.WATCH, repeat=WATCH_POLLS))
    for group, names in SQL_GROUPS.items():
        site.sql[group] = sq.timed(url, ctx, names, repeat=max(repeat, 5))


def time_reconcile_indexed(site: Site, url: str, *, repeat: int) -> None:
    """reconcile's reads again, after the site's team ran the statements doctor gives a reconciling site."""
    with Database.connect(Secret(url)) as db:
        add_reconcile_indexes(db)
    ctx = sq.context(url, HOST, site.order_number)
    site.reconcile_indexed = sq.timed(url, ctx, sq.RECONCILE, repeat=max(repeat, 5))


def doctor_index_lines(env: dict[str, str]) -> list[str]:
    _, out = payverify(env, "doctor", ok=tuple(range(256)))
    lines = [line.strip() for line in out.splitlines() if "index" in line.lower()]
    return lines or ["no index line"]


def explain_all(url: str, label: str, order_number: str) -> None:
    ctx = sq.context(url, HOST, order_number)
    for command, names in sq.COMMANDS.items():
        for name, params in names.items():
            print(f"\n---- {label}: {command}: {name}")
            print("\n".join(sq.explain(url, ctx, name, params)))


# ---- the report ----------------------------------------------------------------------------------------
def target(empty: float) -> float:
    return max(1.2 * empty, empty + 0.1)


def _time(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 0.1 else f"{seconds:.2f} s"


def report(sites: dict[str, Site], due: int) -> bool:
    empty, big, bare = sites["empty"], sites["history"], sites["no index"]
    print(f"\n{'operation':<26} {'empty':>9} {'history+index':>14} {'ratio':>6} {'target':>11} {'':>6} "
          f"{'history, no index':>18}")
    met_all = True
    for key, label in operations(due).items():
        e, h, n = empty.median(key), big.median(key), bare.median(key)
        if key == "watch_poll":
            met, goal = h < WATCH_POLL_TARGET, f"< {_time(WATCH_POLL_TARGET)}"
        else:
            met, goal = h <= target(e), f"<= {_time(target(e))}"
        met_all &= met
        print(f"{label:<26} {_time(e):>9} {_time(h):>14} {h / e:>6.2f} {goal:>11} {'MET' if met else 'MISSED':>6} "
              f"{_time(n):>18}")
    print(f"\n{'query (own connection)':<26} {'empty':>9} {'history+index':>14} {'ratio':>6}      "
          f"{'history, no index':>18}")
    for group in SQL_GROUPS:
        e, h, n = empty.sql[group], big.sql[group], bare.sql[group]
        print(f"{group:<26} {_time(e):>9} {_time(h):>14} {h / e:>6.2f}      {_time(n):>18}")
    if big.reconcile_indexed is not None:
        ratio = big.reconcile_indexed / empty.sql[RECONCILE_GROUP]
        print(f"{'  + the indexes it wants':<26} {'':>9} {_time(big.reconcile_indexed):>14} {ratio:>6.2f}")
    print("\ndoctor on the site without the status index: " + "\n    ".join(bare.doctor))
    return met_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000, help="historical orders")
    parser.add_argument("--rows", type=int, default=None, help="rows per payverify table (default: --orders)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per operation (median)")
    parser.add_argument("--due", type=int, default=20, help="orders the second sweep settles")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN (ANALYZE, BUFFERS) of the queries")
    args = parser.parse_args()
    rows = args.orders if args.rows is None else args.rows
    # As installed: byte-code compiled once (pip does it), so start-up is what a deployment's is.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "payverify")], check=True)
    sites = {label: Site(label) for label in ("empty", "history", "no index")}
    # Stopped with SIGTERM, it still drops its databases (gigabytes at full size) on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with postgres() as server, ExitStack() as stack:
        sumup = stack.enter_context(FakeSumUp())
        smtp = stack.enter_context(SmtpCapture())
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="payverify-scale-")))
        urls = {"empty": stack.enter_context(scratch_database(server)),
                "history": stack.enter_context(scratch_database(server))}
        for label, orders, payverify_rows in (("empty", 0, 0), ("history", args.orders, rows)):
            with Database.connect(Secret(urls[label])) as db:
                built = build_history(db, orders=orders, payverify_rows=payverify_rows, host=HOST)
        print(f"history: {args.orders:,} orders, {rows:,} rows per payverify table, built in {built.seconds:.0f} s")
        started = time.monotonic()
        urls["no index"] = stack.enter_context(copy_of(server, urls["history"]))
        drop_status_index(urls["no index"])
        print(f"copied without the status index in {time.monotonic() - started:.0f} s")
        envs = {label: environment(url, sumup, smtp, work) for label, url in urls.items()}
        for env in envs.values():
            payverify(env, "sweep")  # the first run on a new database reads what the others find cached
        # Round by round, the sites in turn: whatever else this machine is doing slows all three alike.
        for _ in range(args.repeat):
            for label, url in urls.items():
                one_round(sites[label], url, envs[label], sumup, due=args.due)
        for label, url in urls.items():
            time_queries(sites[label], url, repeat=args.repeat)
        sites["no index"].doctor = doctor_index_lines(envs["no index"])
        if args.explain:  # the plans behind the timings: before reconcile's indexes are added
            for label in ("history", "no index"):
                explain_all(urls[label], label, sites[label].order_number)
        time_reconcile_indexed(sites["history"], urls["history"], repeat=args.repeat)
        if args.explain:
            for name, params in sq.RECONCILE.items():
                print(f"\n---- history + reconcile's indexes: {name}")
                print("\n".join(sq.explain(urls["history"], sq.context(urls["history"], HOST,
                                                                         sites["history"].order_number),
                                            name, params)))
    sys.exit(0 if report(sites, args.due) else 1)


if __name__ == "__main__":
    main()

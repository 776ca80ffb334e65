"""The commands. Each docstring is its --help.

Heavy modules (the database driver, requests, the mail stack) are imported inside the commands
that use them, so `payverify --help` starts fast.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import UTC

import click

from payverify.cli.params import Days, EmailAddress, OrderRef, Since
from payverify.exitcodes import ExitStatus
from payverify.modes.runtime import start


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "config_file", metavar="FILE", envvar="PAYVERIFY_CONFIG",
              help="TOML file with settings (environment variables win). Env: PAYVERIFY_CONFIG.")
@click.version_option(package_name="payverify")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """Verify SumUp payments server-side and settle the ticketing site's orders.

    Cron runs `payverify sweep` every five minutes; on-call staff use `payverify check ORDER`.
    """
    ctx.obj = config_file


@cli.command()
@click.option("--since", type=Since(), metavar="T",
              help="Replay: also re-check failed/expired orders created since T "
                   "(ISO 8601 date or datetime, UTC if no offset; or 90m, 48h, 7d).")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Verify at most N orders this run.")
@click.option("--dry-run", is_flag=True, help="Ask SumUp and show what would be done; change nothing.")
@click.pass_obj
def sweep(config_file, since, limit, dry_run) -> int:
    """Verify every order awaiting payment and settle it.

    Silent on success when not on a terminal (cron); details go to the log file. An order whose
    verification errors gets one line on stderr; the exit status stays 0 (the order is retried next
    run; the heartbeat gets /fail, and staff an alert after three such runs in a row).

    SIGTERM: no new order is started, waits end, orders in flight finish, queued mail gets a few
    seconds; exit 0. Ctrl-C (SIGINT) stops the same way and exits 130; a second Ctrl-C at once.

    \b
    Example:
      payverify sweep
      payverify sweep --since 48h --dry-run
    """
    import signal
    import threading

    from payverify.cli import report
    from payverify.logconfig import redact
    from payverify.modes.scheduled import scheduled_run

    rt = start(config_file)
    stop, signals = threading.Event(), []

    def on_signal(signum, frame) -> None:
        if signum == signal.SIGINT and stop.is_set():
            signal.default_int_handler(signum, frame)  # a second Ctrl-C: at once
        signals.append(signum)
        stop.set()

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        with report.ProgressBar(enabled=sys.stderr.isatty() and sys.stdout.isatty()) as bar:
            run = scheduled_run(rt, since=since, limit=limit, dry_run=dry_run, progress=bar.update, stop=stop)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if dry_run or sys.stdout.isatty():
        report.print_sweep(run.sweep, per_order=dry_run)
    for line in report.order_error_lines(run.sweep):
        click.echo(redact(line), err=True)  # describe() made it safe; the redactor is the second line
    if run.sweep.sumup_down:
        click.echo(f"payverify: SumUp did not answer for any of the {run.sweep.verified} orders asked; "
                   "they stay as they were and are retried next run", err=True)
    if signal.SIGINT in signals:
        click.echo("payverify: interrupted; the orders in flight were finished, the rest are verified next run",
                   err=True)
        return ExitStatus.INTERRUPTED
    return run.status


@cli.command()
@click.pass_obj
def watch(config_file) -> int:
    """Verify orders the moment they come back from SumUp: a long-running service beside cron.

    Notices an order entering pending_verification within PAYVERIFY_WATCH_INTERVAL seconds (sooner
    when the site sends `NOTIFY payverify`), asks SumUp at once and again while it says PENDING,
    settles and mails; every minute it does what a cron sweep does. Cron sweeps may keep running
    beside it (leases keep them apart). SIGTERM or SIGINT: orders in flight finish, exit 0.

    \b
    Example:
      payverify watch
    """
    import signal
    import threading

    from payverify.modes.watch import Watch

    rt = start(config_file)
    rt.database().close()  # the site contract and payverify's schema, checked before the service starts
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with rt.presence("watch"):  # its claims die with it
        return Watch(rt, stop).run()


@cli.command()
@click.argument("order", type=OrderRef())
@click.option("--dry-run", is_flag=True, help="Ask SumUp and show the decision; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def check(config_file, order, dry_run, as_json) -> int:
    """Verify one order now, the way a sweep would, and say what was found and done.

    ORDER is the order number (as the customer sees it) or the order's numeric id.

    \b
    Example:
      payverify check JE-7F3K2Q
      payverify check 1042 --dry-run --json
    """
    from payverify.cli import report
    from payverify.modes.check import check_order

    result = check_order(start(config_file), order, dry_run=dry_run, waiting=report.warn)
    if as_json:
        click.echo(json.dumps(report.check_json(result), indent=2, default=str))
    else:
        report.print_check(result)
    no_answer = result.answer.kind == "unknown" and result.result.order.sumup_checkout_id
    return ExitStatus.SUMUP_UNAVAILABLE if no_answer else ExitStatus.OK


@cli.command()
@click.argument("order", type=OrderRef())
@click.option("--to", "to_address", type=EmailAddress(), metavar="ADDRESS",
              help="Send it to this address instead of the order's.")
@click.pass_obj
def resend(config_file, order, to_address) -> int:
    """Send a completed order's confirmation again, with the same tickets.

    For the customer who says the mail never came. Any other status is refused (exit 8).

    \b
    Example:
      payverify resend JE-7F3K2Q
      payverify resend JE-7F3K2Q --to other.address@example.com
    """
    from payverify.cli.report import say
    from payverify.modes.resend import resend as run_resend

    resent = run_resend(start(config_file), order, to_address)
    say(f"Confirmation of {resent.order_number} queued for {resent.recipient}: {resent.state}")
    mail = resent.mail
    if mail.not_configured:
        say(f"It waits in the outbox: {mail.not_configured}")
    elif mail.smtp_down:
        say(f"It waits in the outbox: {mail.smtp_down}; retried on the next run")
    return ExitStatus.OK


@cli.command()
@click.option("--stuck", is_flag=True,
              help="Only orders in pending_verification for longer than PAYVERIFY_STUCK_MINUTES.")
@click.option("--json", "as_json", is_flag=True, help="Print the orders as JSON.")
@click.option("--limit", type=click.IntRange(min=1), default=500, show_default=True, metavar="N")
@click.pass_obj
def pending(config_file, stuck, as_json, limit) -> int:
    """Orders awaiting verification or a person, with what payverify last saw of each.

    Order number, status, age, artist, SumUp's last answer, how often it was checked, how many
    runs in a row its verification errored (with the last error), and whether its mail is queued
    or failed. Failed/expired orders in the rescue window are listed while they error. Read-only.

    \b
    Example:
      payverify pending
      payverify pending --stuck --json
    """
    from payverify.cli import report
    from payverify.modes.pending import pending_orders

    rt = start(config_file)
    # It reads: works even while tickets could not be issued.
    with rt.database(read_only=True) as db:
        orders = pending_orders(rt.settings, db, stuck=stuck, limit=limit)
    if as_json:
        click.echo(json.dumps([asdict(o) for o in orders], indent=2, default=str))
    else:
        report.print_pending(orders, stuck_minutes=rt.settings.policy.stuck_minutes if stuck else None)
    return ExitStatus.OK


@cli.group()
def db() -> None:
    """Manage payverify's own tables (payverify_*). Never touches the site's tables."""


@db.command()
@click.pass_obj
def upgrade(config_file) -> int:
    """Create or upgrade payverify's tables. Idempotent; safe on several hosts at once.

    Needs the rights of the owner of payverify's tables (the first time: to create tables in the
    schema); the run-time role of `payverify db grants` is refused with exit 3, unless the schema is
    already current.

    \b
    Example:
      payverify db upgrade
    """
    from payverify.db.migrate import latest_version
    from payverify.modes.schema import upgrade_schema

    applied = upgrade_schema(start(config_file))
    if applied:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied)
        click.echo(f"payverify schema upgraded to version {latest_version()} (applied {names}); "
                   "if payverify runs as its own database role, apply `payverify db grants ROLE` again")
    else:
        click.echo(f"payverify schema is current (version {latest_version()})")
    return ExitStatus.OK


@db.command()
@click.option("--older-than", type=Days(), metavar="DAYS",
              help="Rows older than this many days: 90d or 90. Default: PAYVERIFY_RETENTION_DAYS (90).")
@click.option("--dry-run", is_flag=True, help="Count what would be removed; change nothing.")
@click.pass_obj
def prune(config_file, older_than, dry_run) -> int:
    """Delete payverify's own old rows now, and say how many went from each table.

    Audit rows, run rows, and mail that was sent or cancelled, older than --older-than. Kept however
    old: failed and pending mail; every row of an order still awaiting verification or a person (the
    orders `payverify pending` lists, and those whose verification keeps erroring); a reconnect alert
    until the artist's SumUp connection works again; per host and command the latest run and the latest
    successful one. In batches of 1,000 rows, each its own short transaction; no site table is changed.
    Sweeps (and watch) do this by themselves at most once an hour, for a few seconds each time; this
    runs until nothing older is left.

    \b
    Example:
      payverify db prune --dry-run
      payverify db prune --older-than 30d
    """
    from payverify.modes.retention import prune as run_prune

    rt = start(config_file)
    days = older_than or rt.settings.retention_days
    # read_only: the ticket columns need not be fillable, as it issues none (it writes only payverify_*).
    with rt.database(read_only=True) as database:
        report = run_prune(database, days=days, dry_run=dry_run, run_id=rt.run_id)
    verb = "would be removed" if dry_run else "removed"
    for table, n in report.removed.items():
        click.echo(f"{table}: {n} {'row' if n == 1 else 'rows'} {verb}")
    cutoff = report.cutoff.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    click.echo(f"(older than {days} days, before {cutoff}{'; dry run, nothing changed' if dry_run else ''})")
    return ExitStatus.OK

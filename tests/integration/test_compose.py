"""Composing mail away from the SMTP session: the bytes on the wire, and the worker processes a burst
hands the composing to (mail/compose_pool.py)."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import re
import signal
import smtplib
import time
from dataclasses import fields, replace
from email import message_from_bytes
from pathlib import Path

import pytest
import structlog

from payverify.config import Settings
from payverify.mail import compose_pool
from payverify.mail import message as mime
from payverify.mail.compose import compose
from payverify.mail.compose_pool import BUSY_STREAK, ComposePool, without_secrets
from payverify.mail.render import Renderer
from payverify.mail.secretless_spawn import KEPT, KEPT_PREFIXES, worker_environment
from payverify.mail.smtp import DeliveryFailed, SmtpTransport, parse_smtp_url
from payverify.secret import Secret
from payverify_dev.mail_samples import SETTINGS, confirmation_row
from payverify_dev.smtp_capture import SmtpCapture
from tests.helpers import log_has
from tests.processes import children, eventually


def composed(n: int = 1, **kwargs) -> tuple[mime.Composed, object]:
    row, tickets = confirmation_row(n, **kwargs)
    return compose(row, tickets, SETTINGS, Renderer(SETTINGS)), row


def sent_both_ways(server: SmtpCapture, message: mime.Composed) -> tuple[bytes, bytes]:
    """The same message through smtplib's send_message and through SmtpTransport.send, as received."""
    parsed = message_from_bytes(message.data, policy=mime.POLICY)
    with smtplib.SMTP(server.host, server.port) as session:
        session.send_message(parsed, from_addr=message.sender, to_addrs=list(message.recipients))
    transport = SmtpTransport(parse_smtp_url(Secret(server.url())))
    try:
        assert transport.send(message) == []
    finally:
        transport.close()
    first, second = server.messages
    assert first.mail_from == second.mail_from == message.sender
    assert first.rcpt_tos == second.rcpt_tos == message.recipients
    return first.data, second.data


def test_the_bytes_sent_are_what_send_message_would_write():
    message, _ = composed()
    assert not message.smtputf8
    with SmtpCapture() as server:
        by_smtplib, by_payverify = sent_both_ways(server, message)
    assert by_payverify == by_smtplib


def test_an_internationalised_address_goes_with_smtputf8_where_the_server_offers_it():
    message, _ = composed(email="jörg@example.de")
    assert message.smtputf8
    with SmtpCapture(smtputf8=True) as server:
        by_smtplib, by_payverify = sent_both_ways(server, message)
    assert by_payverify == by_smtplib
    assert "jörg@example.de".encode() in by_payverify.split(b"\r\n\r\n")[0]  # the To header, in UTF-8


def test_an_internationalised_address_to_a_server_without_smtputf8_is_refused_for_good():
    message, _ = composed(email="jörg@example.de")
    with SmtpCapture() as server:
        transport = SmtpTransport(parse_smtp_url(Secret(server.url())))
        with pytest.raises(DeliveryFailed) as refused:
            transport.send(message)
        transport.close()
        assert server.messages == []
    assert refused.value.permanent and not refused.value.connection
    assert "SMTPUTF8" in refused.value.reason


def test_workers_get_no_secret():
    settings = replace(SETTINGS, database_url=Secret("postgresql://pv:db-password-1@db/site"),
                       sumup_api_key=Secret("sup_sk_live_key_2"), sumup_client_secret=Secret("client-secret-3"),
                       smtp_url=Secret("smtp://u:smtp-password-4@mail"), heartbeat_url=Secret("https://hc/uuid-5"))
    secret_fields = [f.name for f in fields(Settings) if isinstance(getattr(settings, f.name), Secret)]
    assert len(secret_fields) == 5
    cleaned = without_secrets(settings)
    assert all(getattr(cleaned, name) is None for name in secret_fields)
    assert replace(cleaned, **{name: getattr(settings, name) for name in secret_fields}) == settings
    shipped = pickle.dumps(cleaned)
    for secret in (b"db-password-1", b"sup_sk_live_key_2", b"client-secret-3", b"smtp-password-4", b"uuid-5"):
        assert secret not in shipped


SECRET_VARIABLES = ("PAYVERIFY_DATABASE_URL", "SUMUP_API_KEY", "SUMUP_CLIENT_SECRET", "PAYVERIFY_SMTP_URL",
                    "PAYVERIFY_HEARTBEAT_URL")


def environ_of(pid: int) -> dict[str, str]:
    """What /proc says the process started with (the block os.environ changes never reach)."""
    block = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.decode().partition("=")[::2] for item in block.split(b"\0") if item)


def cmdline_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_a_runs_compose_workers_start_with_no_secret_in_their_environment(db, seed, smtp, env, run_payverify):
    """A real sweep with a backlog starts its compose workers; while they compose, each of its child
    processes (the workers and multiprocessing's resource tracker) is read in /proc: the environment
    it started with holds none of the run's secrets, only the allow-list."""
    artist = seed.artist()
    event = seed.event(artist)
    ticket_type = seed.ticket_type(event)
    for i in range(BUSY_STREAK + 10):
        seed.order([(ticket_type, 1)], event_id=event, email=f"fan{i}@example.com")
    secrets = {"PAYVERIFY_HEARTBEAT_URL": "http://127.0.0.1:9/ping/heartbeat-canary-5e1c"}
    assert run_payverify("sweep", extra_env={**secrets, "PAYVERIFY_SMTP_URL": "smtp://127.0.0.1:1"}).returncode == 0
    with db.transaction() as tx:  # the SMTP server was away: now the whole backlog is due
        tx.fetch_sql("UPDATE payverify_outbox SET next_attempt_at = now() RETURNING id")
    seen: dict[int, tuple[str, dict[str, str]]] = {}

    def read_the_workers() -> bool:
        """Called while the server holds the mail after the streak: the workers are up and composing."""
        if not log_has(env["PAYVERIFY_LOG_FILE"], "mail.compose_pool_ready"):
            return False
        runs = [pid for pid in children(os.getpid()) if "payverify" in cmdline_of(pid)]
        for run in runs:
            for child in children(run):
                seen[child] = (cmdline_of(child), environ_of(child))
        return any("--multiprocessing-fork" in cmdline for cmdline, _ in seen.values())

    smtp.hold(BUSY_STREAK, read_the_workers)
    result = run_payverify("sweep", extra_env=secrets)
    assert result.returncode == 0, result.stderr
    workers = [environ for cmdline, environ in seen.values() if "--multiprocessing-fork" in cmdline]
    assert workers, "no compose worker was seen"
    values = [value for name, value in {**env, **secrets}.items() if name in SECRET_VARIABLES]
    assert len(values) == len(SECRET_VARIABLES)
    for cmdline, environ in seen.values():
        assert set(environ) <= {name for name in os.environ if name in KEPT or name.startswith(KEPT_PREFIXES)}, \
            cmdline
        block = "\0".join(f"{k}={v}" for k, v in environ.items())
        for value in values:
            assert value not in block, cmdline
    assert all(environ.get("PATH") == os.environ["PATH"] for environ in workers)
    assert any(m.rcpt_tos == ("fan0@example.com",) for m in smtp.messages)


def test_a_worker_started_here_has_none_of_this_processs_secrets(monkeypatch):
    """The same, for a pool started by this process: os.environ holds secrets, the worker's /proc
    environ none, and this process's environment is as it was."""
    for name in SECRET_VARIABLES:
        monkeypatch.setenv(name, f"canary-{name.lower()}-7d1f")
    before = dict(os.environ)
    row, tickets = confirmation_row(11)
    pool = started_pool()
    try:
        wait_ready(pool, row, tickets)
        (worker,) = multiprocessing.active_children()
        started_with = environ_of(worker.pid)
    finally:
        pool.close()
    assert dict(os.environ) == before
    assert not any("canary-" in value for value in started_with.values())
    assert not any(name.startswith(("PAYVERIFY_", "SUMUP_")) for name in started_with)
    assert started_with == worker_environment(before)


def essence(data: bytes) -> list[tuple]:
    """Every part's content type, filename and decoded content, and the top headers, but for the
    moment of composing (the Date header, the calendar entry's DTSTAMP) and the random boundaries."""
    message = message_from_bytes(data, policy=mime.POLICY)
    headers = [(k, str(v)) for k, v in message.items() if k not in ("Date", "Content-Type")]

    def content(part):
        body = part.get_content()
        if part.get_content_type() == "text/calendar":
            body = re.sub(r"DTSTAMP:\S+", "DTSTAMP:-", body)
        return body

    return [headers, *((part.get_content_type(), part.get_filename(), content(part))
                       for part in message.walk() if not part.is_multipart())]


def started_pool(processes: int = 1) -> ComposePool:
    pool = ComposePool(SETTINGS, processes)
    for _ in range(BUSY_STREAK):
        pool.busy()
    return pool


def worker_composed(pool: ComposePool, row, tickets) -> mime.Composed | None:
    """As the sender asks for a message: begun in a worker, then waited for; None when it would compose
    the message itself."""
    started = pool.start(row, tickets)
    return None if started is None else pool.finish(started)


def wait_ready(pool: ComposePool, row, tickets) -> mime.Composed:
    """The first message the workers compose, once they have started."""
    give_up = time.monotonic() + 60  # a new interpreter and the mail path's imports, on a loaded machine
    while time.monotonic() < give_up:
        message = worker_composed(pool, row, tickets)
        if message is not None:
            return message
        time.sleep(0.05)
    raise AssertionError("the compose workers did not start within 60 s")


def test_workers_start_only_after_a_busy_streak_and_compose_what_the_sender_would():
    row, tickets = confirmation_row(7, tickets=2)
    pool = ComposePool(SETTINGS, 1)
    try:
        for _ in range(BUSY_STREAK - 1):
            pool.busy()
        pool.idle()  # the outbox was found empty: the streak starts again
        for _ in range(BUSY_STREAK - 1):
            pool.busy()
        assert worker_composed(pool, row, tickets) is None  # no worker: the sender composes itself
        assert multiprocessing.active_children() == []
        pool.busy()
        by_worker = wait_ready(pool, row, tickets)
        assert len(multiprocessing.active_children()) == 1
    finally:
        pool.close()
    assert multiprocessing.active_children() == []
    by_sender = compose(row, tickets, SETTINGS, Renderer(SETTINGS))
    assert essence(by_worker.data) == essence(by_sender.data)
    assert (by_worker.sender, by_worker.recipients, by_worker.smtputf8) == \
           (by_sender.sender, by_sender.recipients, by_sender.smtputf8)


def test_a_template_error_in_a_worker_reaches_the_sender_as_itself():
    row, tickets = confirmation_row(8)
    pool = started_pool()
    try:
        wait_ready(pool, row, tickets)
        broken = replace(row, context={k: v for k, v in row.context.items() if k != "order_number"})
        with pytest.raises(Exception) as raised:
            worker_composed(pool, broken, tickets)
        assert "order_number" in str(raised.value)
        bad = replace(row, recipients=("not an address",))
        with pytest.raises(mime.BadAddress):
            worker_composed(pool, bad, tickets)
        assert worker_composed(pool, row, tickets) is not None  # the worker carries on
    finally:
        pool.close()


def test_a_killed_worker_leaves_the_composing_to_the_senders_until_the_next_burst(uncached_structlog):
    row, tickets = confirmation_row(9)
    pool = started_pool()
    try:
        wait_ready(pool, row, tickets)
        (worker,) = multiprocessing.active_children()
        with structlog.testing.capture_logs() as logs:
            os.kill(worker.pid, signal.SIGKILL)
            worker.join(10)
            assert worker_composed(pool, row, tickets) is None
            assert worker_composed(pool, row, tickets) is None
        lost = [e for e in logs if e["event"] == "mail.compose_pool_lost"]
        assert len(lost) == 1 and lost[0]["log_level"] == "warning"
        for _ in range(BUSY_STREAK):
            pool.busy()
        assert worker_composed(pool, row, tickets) is None  # not restarted within the burst
        pool.idle()  # the burst is over: the next one may start workers again
        for _ in range(BUSY_STREAK):
            pool.busy()
        wait_ready(pool, row, tickets)
    finally:
        pool.close()
    assert multiprocessing.active_children() == []


def test_idle_workers_are_shut_down_and_the_next_burst_starts_them_again(uncached_structlog):
    """A watch runs for weeks: between bursts its compose workers' memory is given back."""
    row, tickets = confirmation_row(10)
    now = [0.0]  # the pool's idle clock, moved by hand: however long the workers take to start
    pool = ComposePool(SETTINGS, 1, retire_after=1.0, clock=lambda: now[0])
    try:
        for _ in range(BUSY_STREAK):
            pool.busy()
        wait_ready(pool, row, tickets)
        assert len(multiprocessing.active_children()) == 1
        now[0] += 0.9
        pool.idle()  # the outbox just went empty: too soon
        assert len(multiprocessing.active_children()) == 1
        now[0] += 0.2
        with structlog.testing.capture_logs() as logs:
            pool.idle()  # the workers are shut down in the background: the sender does not wait
        eventually(lambda: not multiprocessing.active_children(), 15, "the idle workers shut down")
        assert multiprocessing.active_children() == []
        assert [e["event"] for e in logs] == ["mail.compose_pool_retired"]
        assert worker_composed(pool, row, tickets) is None  # the senders compose themselves meanwhile
        for _ in range(BUSY_STREAK):
            pool.busy()
        by_worker = wait_ready(pool, row, tickets)  # retired, not lost: a new burst has workers again
        assert len(multiprocessing.active_children()) == 1
    finally:
        pool.close()
    assert multiprocessing.active_children() == []
    assert essence(by_worker.data) == essence(compose(row, tickets, SETTINGS, Renderer(SETTINGS)).data)


def test_one_worker_per_smtp_session_and_at_most_one_per_core(monkeypatch):
    monkeypatch.setattr(compose_pool.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert compose_pool.worker_count(2) == 2
    assert compose_pool.worker_count(1) == 1
    monkeypatch.setattr(compose_pool.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert compose_pool.worker_count(2) == 1
    monkeypatch.setattr(compose_pool.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert compose_pool.worker_count(2) == 2
    assert compose_pool.worker_count(16) == 8

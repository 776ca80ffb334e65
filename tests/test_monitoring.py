"""Monitoring: heartbeat pings, run bookkeeping, the Prometheus text file for node_exporter."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import structlog

from payverify.config import load_settings
from payverify.db import Database
from payverify.errors import ConfigError, SumUpUnavailable
from payverify.mail.sender import SendReport
from payverify.models import Order
from payverify.monitoring import (Heartbeat, Metric, collect_metrics, publish_metrics, record_run_end,
                                  record_run_start, render_metrics, write_metrics_file)
from payverify.sumup.answer import ERROR_KINDS
from payverify.secret import Secret
from payverify.sumup.answer import Answer, AnswerKind, answer_from_reply
from payverify.sumup.client import Reply, ReplyCutOff, RetryableReply
from payverify.sumup.client import _failure as client_failure
from payverify.modes.sweep import SweepReport
from payverify.orders.verify import Verifier
from tests.helpers import rows

PING_TOKEN = "0b7f3c1e-5d2a-4c8e-9f61-canary-ping-token"
HOST = "web1.example.je"

# --------------------------------------------------------------------------------------------------
# helpers


class PingServer:
    """A local HTTP server recording each request; answers the queued statuses, then 200."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self.statuses = list(statuses or [])
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                server.requests.append((self.command, self.path, self.rfile.read(length)))
                status = server.statuses.pop(0) if server.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            do_GET = do_POST = do_HEAD = _answer

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/ping/{PING_TOKEN}"

    def __enter__(self) -> "PingServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def uncached_structlog():
    """capture_logs only sees loggers that were not cached by an earlier configure()."""
    saved = structlog.get_config()
    structlog.configure(cache_logger_on_first_use=False)
    yield
    structlog.configure(**saved)


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


def _unescape(value: str) -> str:
    return re.sub(r"\\([\\\"n])", lambda m: {"n": "\n"}.get(m[1], m[1]), value)


def parse_prometheus(text: str) -> dict[tuple[str, frozenset], float]:
    """A strict little parser of the text format: every line is HELP, TYPE or `name{labels} value`;
    every sample belongs to a family declared by TYPE before it; no sample twice."""
    assert text.endswith("\n") and "\n\n" not in text
    types: dict[str, str] = {}
    helped: set[str] = set()
    samples: dict[tuple[str, frozenset], float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert name not in helped, f"HELP twice for {name}"
            helped.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "summary", "histogram", "untyped"), line
            assert name not in types, f"TYPE twice for {name}"
            types[name] = kind
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, label_text, value = match[1], match[2] or "", match[3]
        family = name if name in types else re.sub(r"_(sum|count)$", "", name)
        assert family in types, f"{name} has no TYPE line before it"
        assert name == family or types[family] == "summary"
        labels, pos = {}, 0
        while pos < len(label_text):
            lm = _LABEL.match(label_text, pos)
            assert lm, f"bad labels in {line!r}"
            labels[lm[1]] = _unescape(lm[2])
            pos = lm.end()
        key = (name, frozenset(labels.items()))
        assert key not in samples, f"sample twice: {line!r}"
        samples[key] = float(value)
    assert helped == set(types), "every family has HELP and TYPE"
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


# --------------------------------------------------------------------------------------------------
# heartbeat


def test_heartbeat_pings_start_success_and_fail_paths():
    """start -> {url}/start, success -> {url} with the summary as body, fail -> {url}/fail."""
    with PingServer() as server:
        beat = Heartbeat(Secret(server.url + "/"), timeout=2)
        assert beat.start() is True
        assert beat.success("verified 3: completed 2, no_change 1") is True
        assert beat.fail("exit 7: SumUp unavailable") is True
    base = f"/ping/{PING_TOKEN}"
    assert [(m, p) for m, p, _ in server.requests] == [("POST", f"{base}/start"), ("POST", base),
                                                        ("POST", f"{base}/fail")]
    assert server.requests[1][2] == b"verified 3: completed 2, no_change 1"
    assert server.requests[2][2] == b"exit 7: SumUp unavailable"


def test_heartbeat_body_is_capped():
    """A huge summary is cut to BODY_LIMIT bytes (healthchecks.io keeps only so much anyway)."""
    with PingServer() as server:
        assert Heartbeat(Secret(server.url), timeout=2).success("x" * 50_000)
    assert len(server.requests[0][2]) == Heartbeat.BODY_LIMIT


def test_heartbeat_without_url_does_nothing():
    """No URL: every ping is a no-op that never touches the network (the session would fail the test)."""

    class Exploding:
        def post(self, *a, **k):
            raise AssertionError("no request may be made")

    beat = Heartbeat(None, session=Exploding())
    assert (beat.start(), beat.success("x"), beat.fail("y")) == (False, False, False)


def test_heartbeat_retries_a_5xx_once_and_a_4xx_never():
    """A 5xx is retried once (then given up), a 4xx is not retried; a retried 5xx can still succeed."""
    with PingServer([503, 503, 503]) as server:
        assert Heartbeat(Secret(server.url), timeout=2).start() is False
    assert len(server.requests) == 2
    with PingServer([404]) as server:
        assert Heartbeat(Secret(server.url), timeout=2).start() is False
    assert len(server.requests) == 1
    with PingServer([502]) as server:
        assert Heartbeat(Secret(server.url), timeout=2).success("ok") is True
    assert len(server.requests) == 2


def test_dead_heartbeat_url_neither_raises_nor_stalls():
    """A server that accepts the connection and never answers: False within about the timeout."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes handshakes; nobody ever reads or answers
    try:
        beat = Heartbeat(Secret(f"http://127.0.0.1:{silent.getsockname()[1]}/{PING_TOKEN}"), timeout=1.0)
        started = time.monotonic()
        assert beat.start() is False
        assert beat.success("x") is False
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert elapsed < 2 * 1.0 + 0.6, f"two pings took {elapsed:.2f}s with a 1s timeout"


def test_refused_heartbeat_is_retried_once_and_fast():
    """Nothing listening: connection refused, one retry, no exception, well under the timeout."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    started = time.monotonic()
    with structlog.testing.capture_logs() as logs:
        assert Heartbeat(Secret(f"http://127.0.0.1:{port}/{PING_TOKEN}"), timeout=5).fail("x") is False
    assert time.monotonic() - started < 2
    assert logs[-1]["attempts"] == 2 and logs[-1]["signal"] == "fail"


def test_heartbeat_url_never_logged(caplog):
    """Failed pings log a warning naming the signal and the problem, never the URL or its token."""
    caplog.set_level("WARNING")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    with structlog.testing.capture_logs() as logs, PingServer([500, 500, 404]) as server:
        Heartbeat(Secret(server.url), timeout=2).start()  # 500, 500
        Heartbeat(Secret(server.url), timeout=2).fail("x")  # 404
        Heartbeat(Secret(f"http://127.0.0.1:{silent.getsockname()[1]}/{PING_TOKEN}"), timeout=0.5).success("x")
        Heartbeat(Secret(f"http://no-such-host.invalid/{PING_TOKEN}"), timeout=2).start()
    silent.close()
    assert [e["log_level"] for e in logs] == ["warning"] * 4
    assert [e["problem"] for e in logs[:3]] == ["HTTP 500", "HTTP 404", "timed out"]
    assert logs[3]["problem"].startswith("failed (")
    text = repr(logs) + caplog.text
    for secret in (PING_TOKEN, server.url, "/ping/", "no-such-host"):
        assert secret not in text


def test_heartbeat_setting_is_a_validated_secret():
    """PAYVERIFY_HEARTBEAT_URL: http(s) only, kept as a Secret, in the redactor's list, never in an error."""
    s = load_settings(environ={"PAYVERIFY_HEARTBEAT_URL": f"https://hc-ping.com/{PING_TOKEN}/",
                               "PAYVERIFY_METRICS_FILE": "/var/lib/node_exporter/payverify.prom"})
    assert isinstance(s.heartbeat_url, Secret)
    assert s.heartbeat_url.reveal() == f"https://hc-ping.com/{PING_TOKEN}"
    assert PING_TOKEN not in repr(s) and f"https://hc-ping.com/{PING_TOKEN}" in s.secrets()
    assert s.metrics_file == "/var/lib/node_exporter/payverify.prom"
    assert load_settings(environ={}).heartbeat_url is None and load_settings(environ={}).metrics_file is None
    with pytest.raises(ConfigError) as err:
        load_settings(environ={"PAYVERIFY_HEARTBEAT_URL": f"ftp://hc-ping.com/{PING_TOKEN}"})
    assert "PAYVERIFY_HEARTBEAT_URL" in str(err.value) and PING_TOKEN not in str(err.value)


# --------------------------------------------------------------------------------------------------
# SumUp error kinds


PAID_BODY = json.dumps({"id": "4e425463-3e1b-431d-83fa-1e51c2925e99", "checkout_reference": "JE-7F3K2Q",
                        "amount": 25.0, "currency": "GBP", "merchant_code": "MH4H92C7", "status": "PAID",
                        "transaction_code": "TEENSK4W2K"})


@pytest.mark.parametrize(("failure", "kind"), [
    (requests.exceptions.ReadTimeout(), "timeout"),
    (requests.exceptions.ConnectTimeout(), "timeout"),
    (ReplyCutOff(timed_out=True), "timeout"),
    (ReplyCutOff(timed_out=False), "connection"),
    (requests.exceptions.ConnectionError(), "connection"),
    (requests.exceptions.SSLError(), "connection"),
    (RetryableReply(503, None), "http_5xx"),
    (RetryableReply(429, 1.0), "http_429"),
])
def test_client_sets_the_kind_where_it_gives_up(failure, kind):
    """The client names the kind when retries run out; the answer carries it to the metrics unchanged."""
    error = client_failure(failure, 3)
    assert error.kind == kind
    answer = Answer.unavailable(error)
    assert answer.error_kind == kind and answer.transport_failure and answer.kind is AnswerKind.UNKNOWN


def test_the_kind_is_never_read_back_out_of_the_message():
    """The reason text is for people: a kind comes only from where the error was seen."""
    answer = Answer.unavailable(SumUpUnavailable("timed out after 3 attempts", kind="connection"))
    assert answer.error_kind == "connection"
    too_large = Answer.unavailable(SumUpUnavailable("reply larger than 1 MiB", kind="not_understood", http_status=200))
    assert too_large.error_kind == "not_understood" and too_large.http_status == 200


@pytest.mark.parametrize(("answer", "kind"), [
    (answer_from_reply(401, ""), "http_401"),
    (answer_from_reply(403, ""), "http_other"),
    (answer_from_reply(302, ""), "http_other"),
    (answer_from_reply(200, "<html>maintenance</html>"), "not_understood"),
    (answer_from_reply(404, ""), None),
    (answer_from_reply(200, PAID_BODY), None),
])
def test_answers_from_replies_carry_their_kind(answer, kind):
    """Each kind of non-definitive reply gets its label; a definitive answer (404, a checkout) gets none."""
    assert answer.error_kind == kind
    assert kind is None or kind in ERROR_KINDS


class _ScriptedClient:
    """Stands in for SumUpClient in Verifier.ask: answers with the queued replies or raises."""

    def __init__(self, *replies):
        self.replies = list(replies)

    def get_checkout(self, checkout_id, token):
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


def _platform_order(**overrides) -> Order:
    now = datetime.now(timezone.utc)
    values = dict(
        id=7, order_number="JE-7F3K2Q", status="pending_verification", email="fan@example.com",
        first_name="Alex", last_name="Morgan", total=Decimal("25.00"), currency="GBP",
        sumup_checkout_id="4e425463-3e1b-431d-83fa-1e51c2925e99", created_at=now, event_id=3,
        event_title="Harbour Lights", event_venue="Fort Regent", event_starts_at=now, event_ends_at=now,
        artist_id=1, artist_name="Lua Verde", artist_merchant_code="MH4H92C7", artist_uses_oauth=False)
    return Order(**(values | overrides))


@pytest.mark.parametrize(("api_key", "order", "replies", "kind"), [
    (None, _platform_order(), (), "credentials"),
    ("sup_sk_kind_test", _platform_order(sumup_checkout_id=None), (), None),
    ("sup_sk_kind_test", _platform_order(), (Reply(401, ""),), "http_401"),
    ("sup_sk_kind_test", _platform_order(), (SumUpUnavailable("gave up", kind="http_5xx", http_status=502),),
     "http_5xx"),
    ("sup_sk_kind_test", _platform_order(), (Reply(404, ""),), None),
])
def test_verifier_sets_the_kind_where_it_asks(api_key, order, replies, kind):
    """The sweep's tally reads `error_kind` as Verifier.ask set it: no token is `credentials`, an order
    without a checkout was not asked (no kind), SumUp's own trouble keeps the client's kind."""
    environ = {"SUMUP_API_KEY": api_key} if api_key else {}
    verifier = Verifier(load_settings(environ=environ), db=None, client=_ScriptedClient(*replies), attempt=None,
                        dry_run=True)
    assert verifier.ask(order).error_kind == kind


# --------------------------------------------------------------------------------------------------
# runs and metrics


def _sweep_report(run_id: str, outcomes: dict[str, int]) -> SweepReport:
    return SweepReport(run_id=run_id, dry_run=False, verified=sum(outcomes.values()), outcomes=Counter(outcomes))


def test_run_rows_record_start_and_end(db):
    """A run's row: started, then finished with its exit status, outcomes, SumUp errors and mail."""
    assert record_run_start(db, "run-a", HOST, "sweep") is True
    assert record_run_start(db, "run-a", HOST, "sweep") is False  # recorded once
    assert record_run_end(db, "run-a", 7, _sweep_report("run-a", {"completed": 2, "no_change": 1}),
                          SendReport(sent=2, failed=1), {"timeout": 3}) is True
    row = rows(db, "SELECT * FROM payverify_runs WHERE run_id = 'run-a'")[0]
    assert (row["host"], row["command"], row["exit_status"], row["verified"]) == (HOST, "sweep", 7, 3)
    assert row["outcomes"] == {"completed": 2, "no_change": 1} and row["sumup_errors"] == {"timeout": 3}
    assert (row["mail_sent"], row["mail_failed"]) == (2, 1)
    assert row["finished_at"] >= row["started_at"]
    assert record_run_start(db, "run-b", HOST, "sweep") and record_run_end(db, "run-b", 4, None, None, {})
    row = rows(db, "SELECT * FROM payverify_runs WHERE run_id = 'run-b'")[0]
    assert (row["exit_status"], row["verified"], row["outcomes"], row["mail_sent"]) == (4, None, {}, None)


def test_run_bookkeeping_never_raises(database_url):
    """With the database gone, recording a run logs a warning and returns False."""
    gone = Database.connect(Secret(database_url))
    gone.close()
    with structlog.testing.capture_logs() as logs:
        assert record_run_start(gone, "run-x", HOST, "sweep") is False
        assert record_run_end(gone, "run-x", 0, None, None, {}) is False
    assert [e["event"] for e in logs] == ["run.record_start_failed", "run.record_end_failed"]


def _seed_world(db, seed):
    """Orders, outbox rows and runs with known metric values."""
    artist = seed.artist()
    event = seed.event(artist)
    tt = seed.ticket_type(event)
    seed.order([(tt, 1)], event_id=event, status="pending_verification", age=timedelta(minutes=40))
    seed.order([(tt, 1)], event_id=event, status="pending", age=timedelta(minutes=10))
    seed.order([(tt, 1)], event_id=event, status="pending", age=timedelta(hours=5), checkout_id=None)  # not due
    seed.order([(tt, 1)], event_id=event, status="failed", age=timedelta(hours=6))  # not due
    paid = [seed.order([(tt, 1)], event_id=event, status="completed", age=timedelta(hours=3)) for _ in range(4)]
    with db.transaction() as tx:
        for order in paid:
            tx.fetch_sql("UPDATE orders_order SET paid_at = now() - interval '3 hours' WHERE id = %(id)s "
                         "RETURNING id", {"id": order.id})

    def outbox(kind, status, order_id=None, dedup=True, paid_ago=None, sent_ago=None):
        with db.transaction() as tx:
            tx.fetch_sql(
                "INSERT INTO payverify_outbox (kind, dedup_key, order_id, recipients, context, message_id, status,"
                " sent_at) VALUES (%(kind)s, %(dedup)s, %(order_id)s, ARRAY['fan@example.com'], '{}',"
                " gen_random_uuid()::text, %(status)s, CASE WHEN %(status)s = 'sent'"
                " THEN now() - make_interval(secs => %(sent_ago)s) END) RETURNING id",
                {"kind": kind, "dedup": f"{kind}:{os.urandom(6).hex()}" if dedup else None, "order_id": order_id,
                 "status": status, "sent_ago": sent_ago or 0})
            if paid_ago is not None:
                tx.fetch_sql("UPDATE orders_order SET paid_at = now() - make_interval(secs => %(s)s) "
                             "WHERE id = %(id)s RETURNING id", {"s": paid_ago, "id": order_id})

    outbox("order_confirmation", "pending")
    outbox("admin_alert_late_payment", "pending")
    outbox("payment_failed", "failed")
    outbox("order_confirmation", "sent", paid[0].id, paid_ago=100, sent_ago=40)  # 60 s
    outbox("order_confirmation", "sent", paid[1].id, paid_ago=50, sent_ago=20)  # 30 s
    outbox("order_confirmation", "sent", paid[2].id, paid_ago=3 * 3600, sent_ago=2 * 3600)  # sent 2 h ago
    outbox("order_confirmation", "sent", paid[3].id, dedup=False, sent_ago=10)  # a resend, 3 h after payment

    record_run_start(db, "r-ok", HOST, "sweep")
    record_run_end(db, "r-ok", 0, _sweep_report("r-ok", {"completed": 5}), SendReport(sent=5), {})
    record_run_start(db, "r-last", HOST, "sweep")
    record_run_end(db, "r-last", 7, _sweep_report("r-last", {"completed": 2, 'odd"one\\\n': 1}),
                   SendReport(), {"timeout": 3, "http_5xx": 1})
    record_run_start(db, "r-going", HOST, "sweep")
    record_run_start(db, "r-other-host", "web2", "sweep")
    record_run_end(db, "r-other-host", 0, _sweep_report("r-other-host", {"expired": 9}), None, {})
    record_run_start(db, "r-check", HOST, "check")
    record_run_end(db, "r-check", 0, None, None, {})
    with db.transaction() as tx:
        for run_id, at in (("r-ok", "2026-01-01T00:00:00Z"), ("r-last", "2026-01-01T00:05:00Z"),
                           ("r-other-host", "2026-01-01T00:10:00Z"), ("r-check", "2026-01-01T00:11:00Z")):
            tx.fetch_sql("UPDATE payverify_runs SET finished_at = %(at)s, started_at = %(at)s::timestamptz "
                         "- interval '42 seconds' WHERE run_id = %(r)s RETURNING id", {"at": at, "r": run_id})


def test_metrics_file_from_a_seeded_database(db, seed, tmp_path):
    """The file parses as Prometheus text and carries this host's runs and the database's state."""
    _seed_world(db, seed)
    path = tmp_path / "payverify.prom"
    assert publish_metrics(db, HOST, str(path)) is True
    text = path.read_text()
    samples = parse_prometheus(text)
    assert all(name.startswith("payverify_") for name, _ in samples)
    assert "# TYPE payverify_runs_total counter" in text
    assert "# TYPE payverify_payment_to_mail_seconds summary" in text

    assert value(samples, "payverify_runs_total", exit_status="0") == 1
    assert value(samples, "payverify_runs_total", exit_status="7") == 1
    assert value(samples, "payverify_runs_total", exit_status="unfinished") == 1
    assert sum(v for (n, _), v in samples.items() if n == "payverify_runs_total") == 3  # not web2, not check

    assert value(samples, "payverify_last_run_orders_verified", outcome="completed") == 2
    assert value(samples, "payverify_last_run_orders_verified", outcome='odd"one\\\n') == 1
    assert ("payverify_last_run_orders_verified", frozenset({("outcome", "expired")})) not in samples
    assert value(samples, "payverify_last_run_sumup_errors", kind="timeout") == 3
    assert value(samples, "payverify_last_run_sumup_errors", kind="http_5xx") == 1
    assert value(samples, "payverify_last_run_sumup_errors", kind="http_429") == 0  # every kind, even at 0

    assert value(samples, "payverify_outbox_backlog") == 2
    assert value(samples, "payverify_outbox_failed") == 1
    assert 40 * 60 - 5 <= value(samples, "payverify_oldest_due_order_age_seconds") <= 40 * 60 + 60

    assert value(samples, "payverify_payment_to_mail_seconds_count") == 2
    assert value(samples, "payverify_payment_to_mail_seconds_sum") == pytest.approx(90, abs=0.01)
    assert value(samples, "payverify_payment_to_mail_max_seconds") == pytest.approx(60, abs=0.01)

    assert value(samples, "payverify_last_success_timestamp_seconds") == 1767225600  # 2026-01-01T00:00Z
    assert value(samples, "payverify_last_run_timestamp_seconds") == 1767225900  # 00:05, exit 7


def test_metrics_of_an_empty_database(db):
    """Nothing yet: the gauges exist at 0 (so alerts on staleness fire), no runs, no outcomes."""
    samples = parse_prometheus(render_metrics(collect_metrics(db, HOST)))
    assert value(samples, "payverify_last_success_timestamp_seconds") == 0
    assert value(samples, "payverify_oldest_due_order_age_seconds") == 0
    assert value(samples, "payverify_payment_to_mail_seconds_count") == 0
    assert value(samples, "payverify_outbox_backlog") == 0
    assert not [n for n, _ in samples if n in ("payverify_runs_total", "payverify_last_run_orders_verified")]


def test_label_values_are_escaped():
    """Quotes, backslashes and newlines in label values are escaped per the format, and round-trip."""
    nasty = 'a "quoted" C:\\path\nnext line'
    text = render_metrics([Metric("payverify_x", "gauge", "A test.", (("", (("kind", nasty),), 2.5),))])
    assert text.splitlines()[2] == r'payverify_x{kind="a \"quoted\" C:\\path\nnext line"} 2.5'
    assert value(parse_prometheus(text), "payverify_x", kind=nasty) == 2.5


def test_metrics_file_is_replaced_atomically(tmp_path):
    """A rewrite replaces the file by rename: a reader of the old file still sees all of it, the new
    one is complete, mode 0644, and no temp file is left beside it."""
    path = tmp_path / "payverify.prom"
    old = [Metric("payverify_x", "gauge", "A test.", (("", (), 1),))]
    write_metrics_file(path, old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    with open(path) as reader:
        write_metrics_file(path, [Metric("payverify_x", "gauge", "A test.", (("", (), 2),))])
        assert reader.read() == render_metrics(old)  # the old inode, untouched
    assert value(parse_prometheus(path.read_text()), "payverify_x") == 2
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(tmp_path) == ["payverify.prom"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    """If the replace fails, the previous file is intact and the temp file is removed."""
    path = tmp_path / "payverify.prom"
    write_metrics_file(path, [Metric("payverify_x", "gauge", "A test.", (("", (), 1),))])
    before = path.read_text()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_metrics_file(path, [Metric("payverify_x", "gauge", "A test.", (("", (), 2),))])
    assert path.read_text() == before
    assert os.listdir(tmp_path) == ["payverify.prom"]


def test_publish_metrics_never_raises(db, tmp_path):
    """An unwritable path is a warning naming the path, not an exception; no path is a no-op."""
    with structlog.testing.capture_logs() as logs:
        assert publish_metrics(db, HOST, str(tmp_path / "missing-dir" / "payverify.prom")) is False
        assert publish_metrics(db, HOST, None) is False
    assert len(logs) == 1 and logs[0]["event"] == "metrics.write_failed" and logs[0]["log_level"] == "warning"
    assert "missing-dir" in logs[0]["path"]
    assert json.dumps(logs[0]["error"])  # a plain message


def test_sweep_pings_the_heartbeat_and_writes_metrics(seed, sumup, run_payverify, tmp_path):
    """A real cron run pings /start then the URL itself, records the run and writes the metrics file;
    a run where SumUp answers nothing pings /fail (exit 7)."""
    from payverify_dev.sumup_server import Scripted

    artist = seed.artist()
    event = seed.event(artist)
    seed.order([(seed.ticket_type(event), 1)], event_id=event)
    metrics = tmp_path / "payverify.prom"
    with PingServer() as pings:
        extra = {"PAYVERIFY_HEARTBEAT_URL": pings.url, "PAYVERIFY_METRICS_FILE": str(metrics)}
        assert run_payverify("sweep", extra_env=extra).returncode == 0
        paths = [path for _, path, _ in pings.requests]
        assert paths == [f"/ping/{PING_TOKEN}/start", f"/ping/{PING_TOKEN}"]
        samples = parse_prometheus(metrics.read_text())
        assert value(samples, "payverify_last_run_orders_verified", outcome="completed") == 1
        assert value(samples, "payverify_runs_total", exit_status="0") == 1

        seed.order([(seed.ticket_type(event), 1)], event_id=event)
        sumup.set_global_fault(Scripted(status=503))
        result = run_payverify("sweep", extra_env=extra)
        assert result.returncode == 7
        assert [path for _, path, _ in pings.requests][2:] == [f"/ping/{PING_TOKEN}/start", f"/ping/{PING_TOKEN}/fail"]
    assert PING_TOKEN not in result.stdout + result.stderr

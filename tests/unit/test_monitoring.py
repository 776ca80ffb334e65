"""Monitoring: heartbeat pings, run bookkeeping, the Prometheus text file for node_exporter."""

from __future__ import annotations

import os
import socket
import stat
import time

import pytest
import structlog

from payverify.config import load_settings
from payverify.errors import ConfigError
from payverify.monitoring import (
    Heartbeat,
    Metric,
    render_metrics,
    write_metrics_file,
)
from payverify.secret import Secret
from tests.observers import PING_TOKEN, PingServer, parse_prometheus, value
from tests.trickle import TricklingServer

# --------------------------------------------------------------------------------------------------
# helpers




pytestmark = pytest.mark.usefixtures("uncached_structlog")










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
        beat = Heartbeat(Secret(f"http://127.0.0.1:{silent.getsockname()[1]}/{PING_TOKEN}"), timeout=0.5)
        started = time.monotonic()
        assert beat.start() is False
        assert beat.success("x") is False
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert elapsed < 2 * 0.5 + 0.6, f"two pings took {elapsed:.2f}s with a 0.5s timeout"


def test_trickling_heartbeat_endpoint_is_cut_at_the_timeout():
    """An endpoint (or a proxy) sending its reply a byte every 0.1 s, each read within the per-read
    timeout: the ping gives up at its timeout, not when the reply would have ended (about 8 s)."""
    with TricklingServer(0.1) as server:
        started = time.monotonic()
        with structlog.testing.capture_logs() as logs:
            assert Heartbeat(Secret(f"{server.url}/{PING_TOKEN}"), timeout=0.8).success("x") is False
        elapsed = time.monotonic() - started
    assert elapsed < 0.8 + 1.0, f"the ping took {elapsed:.1f} s with a 0.8 s timeout"
    assert logs[-1]["problem"] == "timed out"


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
















# --------------------------------------------------------------------------------------------------
# runs and metrics














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





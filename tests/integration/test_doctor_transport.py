"""`payverify doctor` on transport: whether the database connection is encrypted and the server
verified, and whether SMTP may send in clear. Real processes, the real Postgres and SMTP servers.

The test servers are on this machine. "127.1", the short form of 127.0.0.1, is what payverify takes
for another machine (it judges the host as written and resolves no name), while the connection still
reaches the local server: so the tests see what a remote server would give."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pytest

from payverify.db.transport import Transport
from payverify.modes.doctor.database import DATABASE_TLS_ADVICE
from payverify_dev.smtp_capture import SmtpCapture
from tests.helpers import REMOTE_HOST
from tests.integration.test_doctor import lines, platform_key  # noqa: F401 - the fixture is used


def with_host(url: str, host: str, query: str = "") -> str:
    parts = urlsplit(url)
    auth, _, hostport = parts.netloc.rpartition("@")
    port = hostport.rpartition(":")[2]
    return urlunsplit((parts.scheme, f"{auth}@{host}:{port}" if auth else f"{host}:{port}", parts.path,
                       query, ""))


@pytest.fixture
def tcp_database(env) -> str:
    """The test database's URL, when it is reached over TCP (the embedded server uses a socket)."""
    if not urlsplit(env["PAYVERIFY_DATABASE_URL"]).hostname:
        pytest.skip("the test database is reached through a Unix socket")
    return env["PAYVERIFY_DATABASE_URL"]


def test_a_database_on_this_machine_without_tls_is_fine(run_payverify):
    result = run_payverify("doctor")
    assert result.returncode == 0, result.stdout
    status, reason = lines(result)["database transport"]
    assert status == "ok"
    assert reason.startswith("Unix socket ") or ("is this machine" in reason and "not encrypted" in reason)


def test_a_database_elsewhere_reached_in_clear_is_a_warning_naming_the_setting(tcp_database, run_payverify):
    """libpq's default sslmode=prefer fell back to plain text: a warning (not a failure, exit 0)
    saying to add sslmode=verify-full and sslrootcert."""
    remote = with_host(tcp_database, REMOTE_HOST)
    result = run_payverify("doctor", extra_env={"PAYVERIFY_DATABASE_URL": remote})
    assert result.returncode == 0, result.stdout
    status, reason = lines(result)["database transport"]
    assert status == "warn"
    assert "not encrypted (sslmode=prefer)" in reason
    assert "sslmode=verify-full" in reason and "sslrootcert" in reason
    assert lines(result)["database"][0] == "ok"


def test_a_database_elsewhere_with_tls_disabled_is_a_warning(tcp_database, run_payverify):
    remote = with_host(tcp_database, REMOTE_HOST, "sslmode=disable")
    result = run_payverify("doctor", extra_env={"PAYVERIFY_DATABASE_URL": remote})
    status, reason = lines(result)["database transport"]
    assert status == "warn" and "sslmode=disable" in reason


@pytest.mark.parametrize(("sslmode", "protocol", "words"), [
    ("require", "TLSv1.3", "but the server is not verified (sslmode=require"),
    ("verify-ca", "TLSv1.3", "but the server is not verified (sslmode=verify-ca"),
])
def test_tls_below_verify_full_elsewhere_is_a_warning(sslmode, protocol, words, monkeypatch):
    """The test server has no TLS: these lines are judged from what a TLS connection would report."""
    from payverify.modes.doctor import database as doctor_database
    from payverify.modes.doctor.framework import Check, Found

    found = Found()
    found.db = object()  # type: ignore[assignment]
    monkeypatch.setattr(doctor_database, "transport", lambda db: Transport(
        host="db.example.com", socket=False, local=False, sslmode=sslmode, encrypted=True, protocol=protocol))
    check = Check("database transport", 0, doctor_database.check_database_transport)
    result = doctor_database.check_database_transport(found, check)
    assert result.status == "warn" and words in result.reason and DATABASE_TLS_ADVICE in result.reason
    monkeypatch.setattr(doctor_database, "transport", lambda db: Transport(
        host="db.example.com", socket=False, local=False, sslmode="verify-full", encrypted=True, protocol=protocol))
    verified = doctor_database.check_database_transport(found, check)
    assert verified.status == "ok" and "verified (sslmode=verify-full)" in verified.reason


def test_a_database_through_a_unix_socket_is_fine(tcp_database, run_payverify):
    import os

    if not os.path.exists("/var/run/postgresql/.s.PGSQL.5432"):
        pytest.skip("no Postgres socket here")
    parts = urlsplit(tcp_database)
    auth = parts.netloc.rpartition("@")[0]
    url = urlunsplit((parts.scheme, f"{auth}@", parts.path, "host=/var/run/postgresql", ""))
    result = run_payverify("doctor", extra_env={"PAYVERIFY_DATABASE_URL": url})
    status, reason = lines(result)["database"]
    if status != "ok":
        pytest.skip(f"the socket does not take this role: {reason}")
    assert lines(result)["database transport"] == ("ok", "Unix socket /var/run/postgresql: never leaves this machine")


def test_smtp_line_says_whether_mail_may_go_in_clear(run_payverify):
    """doctor says which the SMTP URL does: STARTTLS required off this machine (a FAIL when the
    server offers none), clear text allowed on this machine or when the URL says starttls=optional."""
    with SmtpCapture() as server:
        here = run_payverify("doctor", extra_env={"PAYVERIFY_SMTP_URL": server.url()})
        elsewhere = run_payverify("doctor", extra_env={"PAYVERIFY_SMTP_URL": f"smtp://{REMOTE_HOST}:{server.port}"})
        allowed = run_payverify("doctor", extra_env={
            "PAYVERIFY_SMTP_URL": f"smtp://{REMOTE_HOST}:{server.port}?starttls=optional"})
        assert server.messages == []
    assert lines(here)["SMTP"] == ("ok", f"127.0.0.1:{server.port}: no TLS offered, no login configured; "
                                         "STARTTLS when offered, else clear text allowed (this machine)")
    status, reason = lines(elsewhere)["SMTP"]
    assert status == "FAIL" and "refusing to send mail in clear" in reason and "starttls=optional" in reason
    assert lines(allowed)["SMTP"] == ("ok", f"{REMOTE_HOST}:{server.port}: no TLS offered, no login configured; "
                                            "STARTTLS when offered, else clear text allowed (starttls=optional)")

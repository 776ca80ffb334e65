"""SMTP transport security: STARTTLS, implicit TLS, certificate verification, no password in clear."""

from __future__ import annotations

import pytest

from payverify_dev.smtp_capture import SmtpCapture
from tests.helpers import REMOTE_HOST, scalar

USER, PASSWORD = "mailer", "Sm7pCanaryPw"


@pytest.fixture
def paid_order(seed):
    artist = seed.artist()
    event = seed.event(artist)
    return seed.order([(seed.ticket_type(event), 1)], event_id=event, email="tls@example.com")


def test_starttls_with_login_when_ca_trusted(paid_order, tls_server, ca_file, db, run_payverify):
    """smtp:// upgrades with STARTTLS, verifies the certificate against the configured CA, logs in,
    and delivers; the SMTP password appears nowhere in the output."""
    with SmtpCapture(tls_context=tls_server, require_starttls=True, login=(USER, PASSWORD)) as server:
        result = run_payverify("sweep", extra_env={"PAYVERIFY_SMTP_URL": server.url("smtp", USER, PASSWORD),
                                                   "SSL_CERT_FILE": ca_file})
        assert result.returncode == 0, result.stderr
        assert [m.rcpt_tos for m in server.messages] == [("tls@example.com",)]
    assert PASSWORD not in result.stdout + result.stderr


def test_untrusted_certificate_is_refused(paid_order, tls_server, db, run_payverify):
    """A server whose certificate is not trusted gets nothing: the mail waits in the outbox."""
    with SmtpCapture(tls_context=tls_server, require_starttls=True, login=(USER, PASSWORD)) as server:
        result = run_payverify("sweep", extra_env={"PAYVERIFY_SMTP_URL": server.url("smtp", USER, PASSWORD)})
        assert result.returncode == 0
        assert server.messages == []
    assert "certificate" in result.stderr and PASSWORD not in result.stderr
    assert scalar(db, "SELECT status FROM payverify_outbox") == "pending"


def test_implicit_tls(paid_order, tls_server, ca_file, run_payverify):
    """smtps:// speaks TLS from the first byte and delivers."""
    with SmtpCapture(implicit_tls_context=tls_server, login=(USER, PASSWORD)) as server:
        result = run_payverify("sweep", extra_env={"PAYVERIFY_SMTP_URL": server.url("smtps", USER, PASSWORD),
                                                   "SSL_CERT_FILE": ca_file})
        assert result.returncode == 0, result.stderr
        assert len(server.messages) == 1


def test_no_password_over_a_plain_connection(paid_order, db, run_payverify):
    """A server that offers no STARTTLS never receives the password: nothing is sent, the mail waits."""
    with SmtpCapture(login=(USER, PASSWORD)) as server:
        result = run_payverify("sweep", extra_env={"PAYVERIFY_SMTP_URL": server.url("smtp", USER, PASSWORD)})
        assert result.returncode == 0
        assert server.messages == []
    assert "STARTTLS" in result.stderr
    assert scalar(db, "SELECT status FROM payverify_outbox") == "pending"


def test_no_mail_in_clear_to_another_machine(paid_order, db, run_payverify):
    """smtp:// to another machine whose server offers no STARTTLS (or whose STARTTLS a network
    stripped): confirmations carry door codes, so nothing is sent and the mail waits in the outbox."""
    with SmtpCapture() as server:
        result = run_payverify("sweep", extra_env={"PAYVERIFY_SMTP_URL": f"smtp://{REMOTE_HOST}:{server.port}"})
        assert result.returncode == 0, result.stderr
        assert server.messages == []
    assert "STARTTLS" in result.stderr and "starttls=optional" in result.stderr
    assert scalar(db, "SELECT status FROM payverify_outbox") == "pending"
    assert "starttls=optional" in scalar(db, "SELECT last_error FROM payverify_outbox")


def test_clear_text_to_another_machine_when_the_url_says_so(paid_order, db, run_payverify):
    """?starttls=optional: STARTTLS when offered, else the mail goes in clear, as the URL asked."""
    with SmtpCapture() as server:
        url = f"smtp://{REMOTE_HOST}:{server.port}?starttls=optional"
        result = run_payverify("sweep", extra_env={"PAYVERIFY_SMTP_URL": url})
        assert result.returncode == 0, result.stderr
        assert [m.rcpt_tos for m in server.messages] == [("tls@example.com",)]
    assert scalar(db, "SELECT status FROM payverify_outbox") == "sent"


def test_starttls_required_on_this_machine_too_when_the_url_says_so(paid_order, db, run_payverify):
    with SmtpCapture() as server:
        result = run_payverify("sweep", extra_env={"PAYVERIFY_SMTP_URL": f"{server.url()}?starttls=required"})
        assert result.returncode == 0, result.stderr
        assert server.messages == []
    assert scalar(db, "SELECT status FROM payverify_outbox") == "pending"


@pytest.mark.parametrize("query", ["?starttls=maybe", "?tls=none", "?starttls=optional&x=1"])
def test_an_unknown_smtp_url_parameter_stops_the_run(query, run_payverify):
    result = run_payverify("sweep", extra_env={"PAYVERIFY_SMTP_URL": f"smtp://{REMOTE_HOST}:25{query}"})
    assert result.returncode == 3
    (line,) = result.stderr.splitlines()
    assert "PAYVERIFY_SMTP_URL" in line

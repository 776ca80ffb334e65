"""SumUp over HTTPS: an untrusted certificate is refused (nothing changes); trusted once its CA is configured."""

from __future__ import annotations

import pytest

from payverify.exitcodes import ExitStatus
from payverify_dev.seed import Seeder
from payverify_dev.sumup_server import FakeSumUp
from tests.helpers import rows, scalar, status_of, tickets_of


@pytest.fixture
def https_sumup(tls_server):
    """The SumUp simulator serving HTTPS with a certificate for 127.0.0.1 signed by the test CA."""
    with FakeSumUp(tls_context=tls_server) as server:
        yield server


@pytest.fixture
def paid_order(db, https_sumup):
    seed = Seeder(db, https_sumup)
    artist = seed.artist()
    event = seed.event(artist)
    return seed.order([(seed.ticket_type(event), 2)], event_id=event)


def _env(https_sumup, **extra):
    env = {"SUMUP_API_BASE_URL": https_sumup.url, "REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": "",
           "SSL_CERT_FILE": ""}
    env.update(extra)
    return env


def test_untrusted_certificate_is_refused(paid_order, https_sumup, db, run_payverify):
    """A SumUp endpoint whose certificate is not trusted changes nothing; the audit says SumUp was
    unavailable (a TLS error), and the run exits with SumUp-unavailable."""
    assert https_sumup.url.startswith("https://127.0.0.1:")
    result = run_payverify("sweep", extra_env=_env(https_sumup))
    assert result.returncode == ExitStatus.SUMUP_UNAVAILABLE, result.stderr
    assert "Traceback" not in result.stderr
    assert status_of(db, paid_order.id) == "pending_verification"
    assert tickets_of(db, paid_order.id) == 0
    assert scalar(db, "SELECT count(*) FROM payverify_outbox") == 0
    audit = rows(db, "SELECT outcome, reason FROM payverify_audit WHERE order_id = %(id)s", id=paid_order.id)
    assert len(audit) == 1 and audit[0]["outcome"] == "unchanged", audit
    assert "SumUp unavailable" in audit[0]["reason"] and "TLS" in audit[0]["reason"], audit
    # The handshake failed: no request was ever handled by the server.
    assert https_sumup.requests == []


def test_trusted_when_ca_configured(paid_order, https_sumup, ca_file, db, run_payverify):
    """With the CA in REQUESTS_CA_BUNDLE the same endpoint is trusted and the paid order is settled."""
    result = run_payverify("sweep", extra_env=_env(https_sumup, REQUESTS_CA_BUNDLE=ca_file))
    assert result.returncode == 0, result.stderr
    assert status_of(db, paid_order.id) == "completed"
    assert tickets_of(db, paid_order.id) == paid_order.admissions
    assert scalar(db, f"SELECT outcome FROM payverify_audit WHERE order_id = {paid_order.id}") == "completed"

"""Tests for the local fake SumUp server used by end-to-end tests, the demo and benchmarks."""
from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest
import requests

from payverify_dev.sumup_server import FakeSumUp, Scripted, checkout_body, dumps

MERCHANT, OTHER = "MH4H92C7", "MOTHER01"
KEY, OTHER_KEY = "sup_sk_test_key", "sup_sk_other_key"
CID = "4e425463-3e1b-431d-83fa-1e51c2925e99"


@pytest.fixture
def fake():
    with FakeSumUp() as server:
        server.add_api_key(KEY, MERCHANT)
        server.add_api_key(OTHER_KEY, OTHER)
        server.add_checkout(checkout_body(CID, "JE-7F3K2Q", "25.0", "GBP", MERCHANT, "PAID"))
        yield server


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


def get(http, fake, cid=CID, token=KEY, **kw):
    return http.get(f"{fake.url}/v0.1/checkouts/{cid}", headers={"Authorization": f"Bearer {token}"}, **kw)


def refresh(http, fake, refresh_token, client_secret="test-secret"):
    return http.post(f"{fake.url}/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token,
                                                "client_id": "test-client", "client_secret": client_secret})


def test_paid_checkout_amount_is_json_number(fake, http):
    """A PAID checkout is served with amount as an exact JSON number and a matching SUCCESSFUL transaction."""
    r = get(http, fake)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert '"amount": 25.0' in r.text and '"25.0"' not in r.text
    body = json.loads(r.text, parse_float=Decimal)
    assert body["amount"] == Decimal("25.0") and isinstance(body["amount"], Decimal)
    assert body["status"] == "PAID" and body["transaction_code"] and body["transaction_id"]
    (txn,) = body["transactions"]
    assert txn["status"] == "SUCCESSFUL" and txn["amount"] == Decimal("25.0")
    assert (txn["id"], txn["transaction_code"]) == (body["transaction_id"], body["transaction_code"])
    assert txn["currency"] == "GBP" and txn["merchant_code"] == MERCHANT


def test_checkout_body_statuses():
    """FAILED carries one FAILED transaction and no top-level code; PENDING and EXPIRED carry none."""
    failed = checkout_body("c1", "R1", Decimal("10.1"), "EUR", MERCHANT, "FAILED")
    assert [t["status"] for t in failed["transactions"]] == ["FAILED"] and "transaction_code" not in failed
    for status in ("PENDING", "EXPIRED"):
        assert checkout_body("c2", "R2", "12", "EUR", MERCHANT, status)["transactions"] == []
    assert dumps({"a": Decimal("10.10"), "b": [Decimal("12")]}) == '{"a": 10.10, "b": [12]}'


def test_wrong_types_served_verbatim(fake, http):
    """A deliberately wrong amount type (a string) is served as given."""
    fake.update_checkout(CID, amount="25.00")
    assert '"amount": "25.00"' in get(http, fake).text


def test_unknown_token_401(fake, http):
    """An unknown bearer token gets 401 with an RFC 9457 problem body, as SumUp's spec declares."""
    r = get(http, fake, token="nope")
    assert r.status_code == 401 and r.headers["Content-Type"] == "application/problem+json"
    assert r.json() == {"type": "about:blank", "title": "Unauthorized", "status": 401,
                        "detail": "Invalid or expired access token"}
    assert fake.requests[-1].token_kind == "unknown" and fake.requests[-1].status == 401


def test_other_merchants_checkout_404(fake, http):
    """A checkout owned by another merchant is indistinguishable from a missing one (404)."""
    r = get(http, fake, token=OTHER_KEY)
    assert r.status_code == 404 and r.json() == {"error_code": "NOT_FOUND", "message": "Resource not found"}
    assert get(http, fake, cid="missing").status_code == 404


def test_list_by_reference(fake, http):
    """GET /v0.1/checkouts?checkout_reference= returns only that merchant's checkouts with that reference."""
    fake.add_checkout(checkout_body("c2", "JE-OTHER", "5", "GBP", MERCHANT, "PENDING"))
    fake.add_checkout(checkout_body("c3", "JE-7F3K2Q", "5", "GBP", OTHER, "PENDING"))
    r = http.get(f"{fake.url}/v0.1/checkouts", params={"checkout_reference": "JE-7F3K2Q"},
                 headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and [c["id"] for c in r.json()] == [CID]


def test_token_refresh_rotation(fake, http):
    """Refreshing issues a working access token and a new refresh token; the old one then gives invalid_grant."""
    fake.add_refresh_token("rt-1", MERCHANT)
    r = refresh(http, fake, "rt-1")
    assert r.status_code == 200
    tok = r.json()
    assert tok["token_type"] == "Bearer" and tok["expires_in"] == 3600 and tok["scope"] == "payments"
    assert tok["refresh_token"] != "rt-1" and fake.refresh_tokens_issued == [tok["refresh_token"]]
    assert fake.current_refresh_token(MERCHANT) == tok["refresh_token"]
    assert get(http, fake, token=tok["access_token"]).status_code == 200
    assert fake.requests[-1].token_kind == "access_token"
    again = refresh(http, fake, "rt-1")
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert refresh(http, fake, tok["refresh_token"], client_secret="bad").status_code == 401
    assert fake.token_calls == 3
    fake.expire_access_token(tok["access_token"])
    assert get(http, fake, token=tok["access_token"]).status_code == 401


def test_revoked_refresh_token_and_no_rotation(http):
    """A revoked refresh token gives invalid_grant; without rotation the same refresh token is returned."""
    with FakeSumUp(rotate_refresh_tokens=False, access_token_ttl=60) as fake:
        fake.add_refresh_token("rt-a", MERCHANT)
        tok = refresh(http, fake, "rt-a").json()
        assert tok["refresh_token"] == "rt-a" and tok["expires_in"] == 60
        fake.revoke_refresh_token("rt-a")
        assert refresh(http, fake, "rt-a").json()["error"] == "invalid_grant"
        assert fake.current_refresh_token(MERCHANT) is None


def test_scripted_503_then_normal(fake, http):
    """Scripted replies are consumed one per request, then normal behaviour resumes."""
    fake.script(CID, Scripted(503), Scripted(500, body="<html>Bad gateway</html>"))
    first, second, third = (get(http, fake) for _ in range(3))
    assert first.status_code == 503 and first.content == b""
    assert second.status_code == 500 and second.headers["Content-Type"].startswith("text/html")
    assert third.status_code == 200 and third.json()["status"] == "PAID"


def test_retry_after_header_passed_through(fake, http):
    """Scripted headers such as Retry-After reach the client."""
    fake.script(CID, Scripted(429, body={"error_code": "TOO_MANY_REQUESTS"}, headers={"Retry-After": "2"}))
    r = get(http, fake)
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"
    assert r.json() == {"error_code": "TOO_MANY_REQUESTS"}


def test_reset_gives_connection_error(fake, http):
    """A reset reply closes the socket without answering; the same session then recovers."""
    assert get(http, fake).status_code == 200  # keep-alive connection now pooled
    fake.script(CID, Scripted(reset=True))
    with pytest.raises(requests.ConnectionError):
        get(http, fake)
    assert get(http, fake).status_code == 200
    assert [r.status for r in fake.requests] == [200, None, 200]


def test_truncated_body(fake, http):
    """A truncated reply (short body for its Content-Length) fails the client read."""
    fake.script(CID, Scripted(truncate=True))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        get(http, fake)
    assert get(http, fake).status_code == 200


def test_delay_longer_than_timeout_gives_timeout(fake, http):
    """A delay longer than the client's read timeout looks like a hang."""
    fake.script(CID, Scripted(delay=2.0))
    start = time.monotonic()
    with pytest.raises(requests.Timeout):
        get(http, fake, timeout=0.3)
    assert time.monotonic() - start < 1.5
    assert get(http, fake, timeout=5).status_code == 200


def test_global_fault(fake, http):
    """A global fault answers every checkout GET until cleared, without consuming per-checkout scripts."""
    fake.script(CID, Scripted(502))
    fake.set_global_fault(Scripted(503, headers={"Retry-After": "1"}))
    assert [get(http, fake).status_code for _ in range(3)] == [503, 503, 503]
    fake.set_global_fault(None)
    assert [get(http, fake).status_code for _ in range(2)] == [502, 200]


def test_get_count_and_reset(fake, http):
    """get_count counts checkout GETs per id and overall; reset_counters clears them."""
    fake.add_checkout(checkout_body("c2", "JE-2", "5", "GBP", MERCHANT, "PENDING"))
    get(http, fake), get(http, fake), get(http, fake, cid="c2")
    http.get(f"{fake.url}/nowhere")
    assert (fake.get_count(CID), fake.get_count("c2"), fake.get_count()) == (2, 1, 3)
    assert fake.requests[-1].status == 404 and fake.requests[-1].checkout_id is None
    fake.reset_counters()
    assert fake.get_count() == 0 and fake.requests == []


def test_stop_closes_keepalive_connections(http):
    """After stop() a pooled keep-alive connection cannot reach the server any more."""
    fake = FakeSumUp().start()
    fake.add_api_key(KEY, MERCHANT)
    url = fake.url
    assert http.get(f"{url}/v0.1/checkouts/x", headers={"Authorization": f"Bearer {KEY}"}).status_code == 404
    fake.stop()
    with pytest.raises(requests.ConnectionError):
        http.get(f"{url}/v0.1/checkouts/x", headers={"Authorization": f"Bearer {KEY}"}, timeout=2)

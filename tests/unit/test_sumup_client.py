"""SumUpClient: transport, retries, timeouts and token refresh, against `responses` (no database).

Only the trickling-body test uses a real socket, on 127.0.0.1.
"""

from __future__ import annotations

import email.utils
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
import requests
import responses
import tenacity
import urllib3
from responses import matchers

from payverify.errors import InvalidGrant, SumUpUnavailable, TokenRefreshFailed
from payverify.secret import Secret
from payverify.sumup.checkout import plausible_checkout_id
from payverify.sumup.client import (
    MAX_BODY_BYTES,
    Reply,
    RetryableReply,
    SumUpClient,
    TokenGrant,
    is_retryable,
    parse_retry_after,
)
from payverify.sumup.ratelimit import RateLimiter
from tests.trickle import TricklingServer
from tests.unit.test_ratelimit import FakeClock

BASE = "https://sumup.test"
CANARY = "sup_sk_CANARY123"
REFRESH_CANARY = "rt_CANARY456"
SECRET_CANARY = "cs_CANARY789"
CHECKOUT_ID = "4e425463-3e1b-431d-83fa-1e51c2925e99"
CHECKOUT_URL = f"{BASE}/v0.1/checkouts/{CHECKOUT_ID}"
TOKEN_URL = f"{BASE}/token"


class Recorder:
    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.hooks = 0

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def hook(self) -> None:
        self.hooks += 1


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def client(rec: Recorder) -> SumUpClient:
    c = SumUpClient(BASE, wait=tenacity.wait_none(), sleep=rec.sleep, before_request=rec.hook)
    yield c
    c.close()


@pytest.fixture
def mock() -> responses.RequestsMock:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as m:
        yield m


def assert_no_secrets(exc: BaseException) -> None:
    for text in (str(exc), repr(exc), repr(exc.args)):
        for secret in (CANARY, REFRESH_CANARY, SECRET_CANARY):
            assert secret not in text
    assert exc.__cause__ is None and exc.__context__ is None  # nothing chained (requests carries headers)


def refresh(client: SumUpClient) -> TokenGrant:
    return client.refresh_token(Secret(REFRESH_CANARY), "client-1", Secret(SECRET_CANARY))


# -- reading checkouts -----------------------------------------------------------------------------


def test_200_returned_as_reply_with_body_text(client, mock):
    """A 200 comes back as a Reply carrying the status and the body as text, untouched."""
    body = '{"id": "x", "status": "PAID", "amount": 10.1}'
    mock.get(CHECKOUT_URL, body=body, status=200, content_type="application/json")
    assert client.get_checkout(CHECKOUT_ID, Secret(CANARY)) == Reply(200, body)


def test_bearer_accept_and_user_agent_headers_sent(client, mock):
    """The token goes in `Authorization: Bearer`, with Accept JSON, a payverify User-Agent and both timeouts."""
    mock.get(CHECKOUT_URL, json={}, match=[matchers.header_matcher({
        "Authorization": f"Bearer {CANARY}", "Accept": "application/json"})])
    client.get_checkout(CHECKOUT_ID, Secret(CANARY))
    sent = mock.calls[0].request
    assert sent.headers["User-Agent"].startswith("payverify/")
    assert sent.req_kwargs["timeout"] == (5.0, 15.0)
    assert sent.req_kwargs["stream"] is True


def test_token_never_in_exception_text(client, mock):
    """When SumUp stays down the exception names the failure but never the token, and chains to nothing."""
    mock.get(CHECKOUT_URL, body=requests.exceptions.ConnectionError(f"Bearer {CANARY}"))
    with pytest.raises(SumUpUnavailable) as info:
        client.get_checkout(CHECKOUT_ID, Secret(CANARY))
    assert_no_secrets(info.value)


@pytest.mark.parametrize("status", [401, 403, 404, 400])
def test_4xx_returned_without_retry(client, mock, rec, status):
    """401/403/404/400 are SumUp's answer: returned as a Reply after exactly one call."""
    mock.get(CHECKOUT_URL, json={"error_code": "NOT_FOUND"}, status=status)
    reply = client.get_checkout(CHECKOUT_ID, Secret(CANARY))
    assert reply.status == status and "NOT_FOUND" in reply.text
    assert len(mock.calls) == 1 and rec.sleeps == []


def test_503_then_200_returns_reply_after_two_calls(client, mock, rec):
    """A single 503 is retried and the following 200 is returned."""
    mock.get(CHECKOUT_URL, status=503, body="<html>down</html>")
    mock.get(CHECKOUT_URL, status=200, body='{"status": "PENDING"}')
    assert client.get_checkout(CHECKOUT_ID, Secret(CANARY)).status == 200
    assert len(mock.calls) == 2 and rec.hooks == 2


def test_503_every_time_raises_after_max_attempts(client, mock, rec):
    """Three 503s exhaust max_attempts=3: SumUpUnavailable with http_status 503, exactly 3 calls."""
    mock.get(CHECKOUT_URL, status=503)
    with pytest.raises(SumUpUnavailable) as info:
        client.get_checkout(CHECKOUT_ID, Secret(CANARY))
    assert info.value.http_status == 503
    assert str(info.value) == "HTTP 503 after 3 attempts"
    assert len(mock.calls) == 3 and rec.hooks == 3 and len(rec.sleeps) == 2
    assert_no_secrets(info.value)


def test_max_attempts_is_configurable(mock, rec):
    """max_attempts bounds the calls in all (here 5)."""
    client = SumUpClient(BASE, max_attempts=5, wait=tenacity.wait_none(), sleep=rec.sleep)
    mock.get(CHECKOUT_URL, status=500)
    with pytest.raises(SumUpUnavailable, match="HTTP 500 after 5 attempts"):
        client.get_checkout(CHECKOUT_ID, Secret(CANARY))
    assert len(mock.calls) == 5


def test_429_retry_after_seconds_is_honoured(client, mock, rec):
    """A 429 with Retry-After: 7 makes the client sleep exactly 7 s before the next attempt."""
    mock.get(CHECKOUT_URL, status=429, headers={"Retry-After": "7"})
    mock.get(CHECKOUT_URL, status=200, body="{}")
    assert client.get_checkout(CHECKOUT_ID, Secret(CANARY)).status == 200
    assert rec.sleeps == [7.0]


def test_429_retry_after_beyond_the_cap_gives_up_at_once(mock, rec):
    """Retry-After: 61 is longer than we may wait (RETRY_AFTER_CAP_SECONDS, 60 s): no early retry that
    SumUp would refuse again; the order is left for a later run (SumUpUnavailable, 429, one call)."""
    client = SumUpClient(BASE, wait=tenacity.wait_none(), sleep=rec.sleep)
    mock.get(CHECKOUT_URL, status=429, headers={"Retry-After": "61"})
    mock.get(CHECKOUT_URL, status=200, body="{}")
    with pytest.raises(SumUpUnavailable) as raised:
        client.get_checkout(CHECKOUT_ID, Secret(CANARY))
    assert raised.value.http_status == 429
    assert rec.sleeps == []
    assert len(mock.calls) == 1


def test_429_retry_after_http_date(client, mock, rec):
    """Retry-After as an HTTP date waits until that moment (about 20 s from now)."""
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    mock.get(CHECKOUT_URL, status=429, headers={"Retry-After": when})
    mock.get(CHECKOUT_URL, status=200, body="{}")
    client.get_checkout(CHECKOUT_ID, Secret(CANARY))
    assert len(rec.sleeps) == 1 and 15 <= rec.sleeps[0] <= 20


def test_429_without_retry_after_uses_injected_wait(mock, rec):
    """Without Retry-After the configured wait strategy decides (wait_fixed(2) -> 2 s sleeps)."""
    client = SumUpClient(BASE, wait=tenacity.wait_fixed(2), sleep=rec.sleep)
    mock.get(CHECKOUT_URL, status=429)
    with pytest.raises(SumUpUnavailable) as info:
        client.get_checkout(CHECKOUT_ID, Secret(CANARY))
    assert str(info.value) == "rate limited (HTTP 429) after 3 attempts"
    assert info.value.http_status == 429 and rec.sleeps == [2, 2]


def test_default_wait_is_jittered_exponential(mock, rec):
    """The default wait is exponential with full jitter: each sleep lies within [0, 0.5 * 2**n]."""
    client = SumUpClient(BASE, sleep=rec.sleep)
    mock.get(CHECKOUT_URL, status=502)
    with pytest.raises(SumUpUnavailable):
        client.get_checkout(CHECKOUT_ID, Secret(CANARY))
    assert len(rec.sleeps) == 2 and 0 <= rec.sleeps[0] <= 1 and 0 <= rec.sleeps[1] <= 2


@pytest.mark.parametrize(
    "error, reason",
    [
        (requests.exceptions.ConnectionError("refused"), "connection failed after 3 attempts"),
        (requests.exceptions.ConnectTimeout("slow"), "timed out after 3 attempts"),
        (requests.exceptions.ReadTimeout("slow"), "timed out after 3 attempts"),
        (requests.exceptions.SSLError("bad cert"), "TLS error after 3 attempts"),
    ],
)
def test_connection_errors_and_timeouts_retried_then_unavailable(client, mock, rec, error, reason):
    """Connection failures and timeouts are retried max_attempts times, then SumUpUnavailable (no status)."""
    mock.get(CHECKOUT_URL, body=error)
    with pytest.raises(SumUpUnavailable) as info:
        client.get_checkout(CHECKOUT_ID, Secret(CANARY))
    assert str(info.value) == reason and info.value.http_status is None
    assert len(mock.calls) == 3 and rec.hooks == 3
    assert_no_secrets(info.value)


def test_timeout_then_success(client, mock):
    """A connect timeout followed by a 200 returns the 200."""
    mock.get(CHECKOUT_URL, body=requests.exceptions.ConnectTimeout())
    mock.get(CHECKOUT_URL, body="{}")
    assert client.get_checkout(CHECKOUT_ID, Secret(CANARY)).status == 200


def test_html_200_body_returned_as_text(client, mock):
    """An HTML 200 (a gateway page) is returned as text: the client never parses bodies."""
    mock.get(CHECKOUT_URL, body="<html><body>Maintenance</body></html>", content_type="text/html")
    reply = client.get_checkout(CHECKOUT_ID, Secret(CANARY))
    assert reply == Reply(200, "<html><body>Maintenance</body></html>")


def test_empty_and_non_utf8_bodies(client, mock):
    """An empty body is "" and undecodable bytes are replaced rather than raising."""
    mock.get(CHECKOUT_URL, body=b"")
    mock.get(CHECKOUT_URL, body=b"\xff\xfeok", status=404)
    assert client.get_checkout(CHECKOUT_ID, Secret(CANARY)).text == ""
    assert client.get_checkout(CHECKOUT_ID, Secret(CANARY)).text.endswith("ok")


@pytest.mark.parametrize("bad_id", ["", ".", ".."])
def test_dot_segment_or_empty_id_refused(client, mock, bad_id):
    """An empty or dot-segment id would be normalised to another path: refused before any request."""
    with pytest.raises(ValueError):
        client.get_checkout(bad_id, Secret(CANARY))
    assert len(mock.calls) == 0


def test_find_checkouts_by_reference(client, mock):
    """find_checkouts sends GET /v0.1/checkouts?checkout_reference=REF (encoded) and returns the body."""
    mock.get(f"{BASE}/v0.1/checkouts", body="[]",
             match=[matchers.query_param_matcher({"checkout_reference": "JE-7F3K2Q&x=1"})])
    assert client.find_checkouts("JE-7F3K2Q&x=1", Secret(CANARY)) == Reply(200, "[]")
    with pytest.raises(ValueError):
        client.find_checkouts("", Secret(CANARY))


def test_redirect_is_not_followed(client, mock):
    """A 3xx is returned as a Reply and not followed, so the bearer token never goes elsewhere."""
    mock.get(CHECKOUT_URL, status=302, headers={"Location": "https://evil.test/"})
    assert client.get_checkout(CHECKOUT_ID, Secret(CANARY)).status == 302
    assert len(mock.calls) == 1


def test_body_over_1_mib_raises_without_retry(client, mock):
    """A body larger than 1 MiB raises SumUpUnavailable("reply larger than 1 MiB") after one call."""
    mock.get(CHECKOUT_URL, body=b"x" * (MAX_BODY_BYTES + 1))
    with pytest.raises(SumUpUnavailable, match="reply larger than 1 MiB"):
        client.get_checkout(CHECKOUT_ID, Secret(CANARY))
    assert len(mock.calls) == 1


def test_body_exactly_1_mib_is_accepted(client, mock):
    """The limit is inclusive: a body of exactly 1 MiB is returned."""
    mock.get(CHECKOUT_URL, body=b"x" * MAX_BODY_BYTES)
    assert len(client.get_checkout(CHECKOUT_ID, Secret(CANARY)).text) == MAX_BODY_BYTES


def test_slow_body_is_a_timeout_not_retried(mock, rec):
    """A body read exceeding connect+read timeout in one attempt counts as a timeout; a server that slow
    is asked again later, not at once (a retry would multiply the bound on the request)."""
    ticks = itertools.count(step=100)  # every clock reading is 100 s after the last
    client = SumUpClient(BASE, wait=tenacity.wait_none(), sleep=rec.sleep, clock=lambda: next(ticks))
    mock.get(CHECKOUT_URL, body="{}")
    with pytest.raises(SumUpUnavailable, match=r"timed out after 1 attempt$") as raised:
        client.get_checkout(CHECKOUT_ID, Secret(CANARY))
    assert raised.value.failure == "timeout"
    assert len(mock.calls) == 1


def test_body_cut_off_is_retried(client, mock):
    """A connection dropped mid-body (urllib3 ProtocolError) is retried; the next full reply is returned."""
    mock.get(CHECKOUT_URL, body="{}")
    mock.get(CHECKOUT_URL, body="{}")
    real = urllib3.response.HTTPResponse.read1
    calls = {"n": 0}

    def flaky(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise urllib3.exceptions.ProtocolError("connection broken")
        return real(self, *a, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(urllib3.response.HTTPResponse, "read1", flaky)
        assert client.get_checkout(CHECKOUT_ID, Secret(CANARY)) == Reply(200, "{}")
    assert len(mock.calls) == 2


def test_trickling_body_is_cut_at_the_deadline():
    """Against a real socket, a body sent a byte at a time stops at connect+read timeout, not at its end."""

    class Trickle(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            try:
                for _ in range(100):  # 5 s in all, each byte well within the 0.3 s read timeout
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                pass  # the client hung up, as intended

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        client = SumUpClient(f"http://127.0.0.1:{server.server_address[1]}", connect_timeout=0.3,
                             read_timeout=0.3, max_attempts=1)
        started = time.monotonic()
        with pytest.raises(SumUpUnavailable, match=r"timed out after 1 attempt$"):
            client.get_checkout(CHECKOUT_ID, Secret(CANARY))
        assert time.monotonic() - started < 2
    finally:
        server.shutdown()
        server.server_close()


def test_before_request_called_once_per_attempt(client, mock, rec):
    """before_request runs before every HTTP attempt, including retries."""
    mock.get(CHECKOUT_URL, status=500)
    mock.get(CHECKOUT_URL, body=requests.exceptions.ConnectTimeout())
    mock.get(CHECKOUT_URL, body="{}")
    client.get_checkout(CHECKOUT_ID, Secret(CANARY))
    assert rec.hooks == 3 == len(mock.calls)


def test_is_retryable_predicate():
    """The predicate accepts transient failures only."""
    assert is_retryable(requests.exceptions.ConnectionError())
    assert is_retryable(requests.exceptions.ReadTimeout())
    assert is_retryable(requests.exceptions.ChunkedEncodingError())
    assert is_retryable(requests.exceptions.ContentDecodingError())
    assert is_retryable(RetryableReply(503, None))
    assert not is_retryable(requests.exceptions.InvalidURL())
    assert not is_retryable(ValueError())
    assert not is_retryable(SumUpUnavailable("reply larger than 1 MiB", failure="not_understood"))


@pytest.mark.parametrize(
    "value, expected",
    [("7", 7.0), (" 1.5 ", 1.5), ("0", 0.0), (None, None), ("", None), ("-3", None), ("nan", None),
     ("soon", None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_parse_retry_after(value, expected):
    """Retry-After: seconds or HTTP date (a past date means now); garbage and negatives are ignored."""
    assert parse_retry_after(value) == expected


def test_session_without_tls_verification_refused():
    """A session with verify=False is refused: TLS verification stays on."""
    session = requests.Session()
    session.verify = False
    with pytest.raises(ValueError):
        SumUpClient(BASE, session=session)


# -- token refresh ---------------------------------------------------------------------------------


def grant_body(**fields) -> str:
    return json.dumps({"access_token": "at_NEW", "token_type": "Bearer", "expires_in": 3599,
                       "refresh_token": "rt_NEW", "scope": "payments", **fields})


def test_refresh_sends_form_and_returns_new_pair(client, mock):
    """refresh_token POSTs the four form fields to /token and returns the new access/refresh pair."""
    mock.post(TOKEN_URL, body=grant_body())
    grant = refresh(client)
    assert grant == TokenGrant(Secret("at_NEW"), Secret("rt_NEW"), 3599, "payments")
    sent = mock.calls[0].request
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "Authorization" not in sent.headers
    assert parse_qs(sent.body) == {"grant_type": ["refresh_token"], "refresh_token": [REFRESH_CANARY],
                                   "client_id": ["client-1"], "client_secret": [SECRET_CANARY]}


def test_refresh_without_refresh_token_returns_none(client, mock):
    """A response without refresh_token gives refresh_token=None (keep the old one); defaults fill the rest."""
    mock.post(TOKEN_URL, body=json.dumps({"access_token": "at_NEW"}))
    assert refresh(client) == TokenGrant(Secret("at_NEW"), None, 3600, None)


@pytest.mark.parametrize("expires_in, expected", [("1800", 1800), (1800.0, 1800), ("soon", 3600),
                                                  (True, 3600), (-5, 3600), (10**12, 3600), (1800.5, 3600),
                                                  (1e400, 3600), ("9" * 5000, 3600), (1e300, 3600)])
def test_refresh_expires_in_int_ish(client, mock, expires_in, expected):
    """expires_in accepts int-ish values; anything else (a fraction, Infinity, 5,000 digits) falls back to 3600 s."""
    mock.post(TOKEN_URL, body=grant_body(expires_in=expires_in))
    assert refresh(client).expires_in == expected


@pytest.mark.parametrize("status", [400, 401])
def test_refresh_invalid_grant_raises_without_retry(client, mock, status):
    """invalid_grant (400 or 401) raises InvalidGrant after exactly one call, naming no secret."""
    mock.post(TOKEN_URL, status=status, json={"error": "invalid_grant", "error_description": REFRESH_CANARY})
    with pytest.raises(InvalidGrant) as info:
        refresh(client)
    assert len(mock.calls) == 1
    assert_no_secrets(info.value)


def test_refresh_is_one_attempt_a_500_is_not_retried(client, mock, rec):
    """The refresh runs under the artist's row lock: one attempt, no sleep, the order is asked later."""
    mock.post(TOKEN_URL, status=500, body="<html>oops</html>")
    mock.post(TOKEN_URL, body=grant_body())
    with pytest.raises(SumUpUnavailable, match=r"HTTP 500 after 1 attempt$"):
        refresh(client)
    assert len(mock.calls) == 1
    assert rec.sleeps == []


def test_refresh_connect_error_is_not_retried(client, mock, rec):
    """A connection error before any reply: SumUpUnavailable at once, naming no secret."""
    mock.post(TOKEN_URL, body=requests.exceptions.ConnectionError(SECRET_CANARY))
    with pytest.raises(SumUpUnavailable, match=r"connection failed after 1 attempt$") as info:
        refresh(client)
    assert len(mock.calls) == 1
    assert rec.sleeps == []
    assert_no_secrets(info.value)


def test_refresh_does_not_wait_out_a_429_pause(mock, rec):
    """A 429's Retry-After (under the run's cap) pauses the run; a refresh does not wait for it while
    it holds the artist's lock: refused unsent, the artist's order asked again later."""
    from payverify.sumup.ratelimit import RateLimiter

    now = [0.0]
    limiter = RateLimiter(0, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    client = SumUpClient(BASE, wait=tenacity.wait_none(), sleep=rec.sleep, limiter=limiter, clock=lambda: now[0])
    assert limiter.rate_limited(30.0)
    with pytest.raises(SumUpUnavailable, match="not sent") as info:
        refresh(client)
    assert info.value.failure == "not_sent"
    assert len(mock.calls) == 0 and now[0] == 0.0


def test_refresh_body_cut_off_is_not_resent(mock, rec):
    """Once /token has started replying the request is not re-sent (the reply may hold a rotated token)."""
    ticks = itertools.count(step=100)
    client = SumUpClient(BASE, wait=tenacity.wait_none(), sleep=rec.sleep, clock=lambda: next(ticks))
    mock.post(TOKEN_URL, body=grant_body())
    with pytest.raises(SumUpUnavailable, match=r"timed out after 1 attempt$"):
        refresh(client)
    assert len(mock.calls) == 1


@pytest.mark.parametrize(
    "body",
    ["", "<html>ok</html>", "[]", "null", '{"access_token": 5}', '{"access_token": ""}',
     '{"token_type": "Bearer"}', '{"access_token": "at", "refresh_token": 7}'],
)
def test_refresh_malformed_200_raises_token_refresh_failed(client, mock, body):
    """A 200 whose body is not a usable grant raises TokenRefreshFailed(http_status=200), no retry."""
    mock.post(TOKEN_URL, body=body)
    with pytest.raises(TokenRefreshFailed) as info:
        refresh(client)
    assert str(info.value) == "token endpoint answered 200 with a body that is not understood"
    assert info.value.http_status == 200 and len(mock.calls) == 1
    assert_no_secrets(info.value)


@pytest.mark.parametrize(
    "status, body, message",
    [(401, '{"error": "invalid_client"}', "token endpoint answered HTTP 401 (invalid_client)"),
     (400, "<html>bad</html>", "token endpoint answered HTTP 400"),
     (403, "", "token endpoint answered HTTP 403"),
     (400, json.dumps({"error": f"leak {SECRET_CANARY}"}), "token endpoint answered HTTP 400")],
)
def test_refresh_other_errors_raise_token_refresh_failed(client, mock, status, body, message):
    """Other non-2xx answers raise TokenRefreshFailed with the status; only a short OAuth code is echoed."""
    mock.post(TOKEN_URL, status=status, body=body)
    with pytest.raises(TokenRefreshFailed) as info:
        refresh(client)
    assert str(info.value) == message and info.value.http_status == status
    assert len(mock.calls) == 1
    assert_no_secrets(info.value)


def test_refresh_503_names_no_secret(client, mock):
    """A token endpoint answering 503 gives SumUpUnavailable without any secret in it (one attempt)."""
    mock.post(TOKEN_URL, status=503)
    with pytest.raises(SumUpUnavailable) as info:
        refresh(client)
    assert info.value.http_status == 503 and len(mock.calls) == 1
    assert_no_secrets(info.value)


IMPLAUSIBLE_CHECKOUT_IDS = ["", ".", "..", "../x", "a/b", "a/../b?x=1#f", "a b", " ", "\t", "abc\n", "a\x00b",
                            "a\x1bb", "a?b", "a#b", "a%2Fb", "é", "x" * 65, "x" * 500]


@pytest.mark.parametrize("checkout_id", [CHECKOUT_ID, CHECKOUT_ID.upper(), "a", "x" * 64, "chk_123-ABC", "12345"])
def test_plausible_checkout_ids(checkout_id):
    """SumUp's checkout ids are UUIDs in its examples; any 1-64 letters, digits, '-' and '_' pass."""
    assert plausible_checkout_id(checkout_id)


@pytest.mark.parametrize("checkout_id", IMPLAUSIBLE_CHECKOUT_IDS)
def test_implausible_checkout_ids(checkout_id):
    """Dot segments, slashes, whitespace, control characters, escapes, non-ASCII, too long: not a SumUp id."""
    assert not plausible_checkout_id(checkout_id)


@pytest.mark.parametrize("checkout_id", IMPLAUSIBLE_CHECKOUT_IDS)
def test_get_checkout_never_sends_an_implausible_id(client, mock, checkout_id):
    """The client refuses an id that is not plausible (with "/", "?" or "#" it could change the path or
    query) before any request, rather than put it in the URL path."""
    with pytest.raises(ValueError):
        client.get_checkout(checkout_id, Secret(CANARY))
    assert len(mock.calls) == 0


# ---- the request's wall-clock deadline, and the run's waits -----------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_trickling_status_line_and_headers_are_cut_at_the_deadline(tls, request, monkeypatch):
    """A server sending even its status line a byte every 0.1 s (each read well within the 0.3 s read
    timeout): the request ends at connect + read timeout, as a timeout, and is not retried. Under TLS
    too (the socket is shut below the TLS layer)."""
    tls_ctx = request.getfixturevalue("tls_server") if tls else None
    if tls:  # verified against the test CA
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", request.getfixturevalue("ca_file"))
    with TricklingServer(0.1, tls=tls_ctx) as server:
        client = SumUpClient(server.url, connect_timeout=0.3, read_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(SumUpUnavailable, match=r"timed out after 1 attempt$") as raised:
            client.get_checkout(CHECKOUT_ID, Secret(CANARY))
        elapsed = time.monotonic() - started
        client.close()
    assert raised.value.failure == "timeout"
    assert server.served == 1
    assert elapsed < 0.6 + 1.0, f"took {elapsed:.1f} s with a 0.6 s allowance"
    assert_no_secrets(raised.value)


def test_a_trickling_token_endpoint_is_cut_at_the_deadline_and_not_resent():
    """The OAuth token request has the same deadline: a /token reply trickling in ends at connect + read
    timeout, as a timeout, sent once (its reply may have carried a rotated token)."""
    with TricklingServer(0.1) as server:
        client = SumUpClient(server.url, connect_timeout=0.3, read_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(SumUpUnavailable, match=r"timed out after 1 attempt$") as raised:
            refresh(client)
        elapsed = time.monotonic() - started
        client.close()
    assert server.served == 1 and elapsed < 0.6 + 1.0
    assert_no_secrets(raised.value)


def test_a_long_retry_after_ends_the_runs_sumup_work(mock):
    """429 with Retry-After 3600 (over the 60 s cap): not retried, and every later request of the run
    (sharing the limiter) fails at once as http_429 without being sent."""
    limiter = RateLimiter(0)
    client = SumUpClient(BASE, wait=tenacity.wait_none(), limiter=limiter)
    mock.get(CHECKOUT_URL, status=429, headers={"Retry-After": "3600"})
    mock.get(CHECKOUT_URL, body="{}")
    for _ in range(3):
        with pytest.raises(SumUpUnavailable) as raised:
            client.get_checkout(CHECKOUT_ID, Secret(CANARY))
        assert raised.value.failure == "http_429"
    assert len(mock.calls) == 1


def test_a_retry_after_within_the_cap_is_waited_through_the_limiter_and_retried(mock):
    """Retry-After 60 (the cap): the whole run pauses 60 s on the limiter's clock, then the request is retried."""
    clock = FakeClock()
    limiter = RateLimiter(0, clock=clock.clock, sleep=clock.sleep)
    client = SumUpClient(BASE, wait=tenacity.wait_none(), limiter=limiter, sleep=_never)
    mock.get(CHECKOUT_URL, status=429, headers={"Retry-After": "60"})
    mock.get(CHECKOUT_URL, body="{}")
    assert client.get_checkout(CHECKOUT_ID, Secret(CANARY)).status == 200
    assert clock.now >= 100.0 + 60
    assert len(mock.calls) == 2


def test_the_runs_deadline_cuts_a_retry_wait_and_nothing_more_is_sent(mock):
    """A 429 with Retry-After 30 and 5 s left in the run: the wait ends at the deadline and the request
    is not sent again; it fails as the 429 it got (the order stays as it was)."""
    clock = FakeClock()
    limiter = RateLimiter(0, deadline=clock.now + 5, clock=clock.clock, sleep=clock.sleep)
    client = SumUpClient(BASE, wait=tenacity.wait_none(), limiter=limiter, sleep=_never)
    mock.get(CHECKOUT_URL, status=429, headers={"Retry-After": "30"})
    mock.get(CHECKOUT_URL, body="{}")
    with pytest.raises(SumUpUnavailable) as raised:
        client.get_checkout(CHECKOUT_ID, Secret(CANARY))
    assert raised.value.failure == "http_429" and len(mock.calls) == 1
    assert clock.now == pytest.approx(105.0)
    with pytest.raises(SumUpUnavailable) as raised:  # after the deadline: nothing is sent at all
        client.get_checkout(CHECKOUT_ID, Secret(CANARY))
    assert raised.value.failure == "not_sent" and len(mock.calls) == 1


def test_a_stop_wakes_a_request_waiting_out_a_pause(mock):
    """Real time: a request waiting out a 60 s pause returns within a moment of the stop, unsent."""
    stop = threading.Event()
    limiter = RateLimiter(0, stop=stop)
    limiter.rate_limited(60)
    client = SumUpClient(BASE, limiter=limiter)
    mock.get(CHECKOUT_URL, body="{}")
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    with pytest.raises(SumUpUnavailable) as raised:
        client.get_checkout(CHECKOUT_ID, Secret(CANARY))
    assert time.monotonic() - started < 3
    assert raised.value.failure == "not_sent" and len(mock.calls) == 0


def _never(seconds: float) -> None:
    raise AssertionError("with a limiter, every wait is the limiter's")

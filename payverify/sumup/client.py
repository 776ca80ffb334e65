"""HTTP client for SumUp's API: transport, retries and timeouts only (no database, no decisions).

Replies SumUp actually gave (2xx, 3xx, 4xx other than 429) come back as `Reply` for the caller to judge.
Connection errors, timeouts, 5xx and 429 are retried; when retries run out `SumUpUnavailable` is raised.
Each attempt has a wall-clock deadline, connect timeout + read timeout, for the whole of it (a server
trickling its headers or body included: payverify.http_deadline); one that runs out is not retried, a
server that slow is asked again later. A Retry-After over RETRY_AFTER_CAP_SECONDS is not waited for
(see ratelimit.py). With a run's limiter, every wait between attempts is the limiter's (it ends at the
run's deadline or stop, and the request is then not sent again).
No message ever contains a token, a secret or a header, and no raised exception chains to a requests
exception (their `.request` carries the Authorization header).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import requests
import tenacity
import urllib3
from tenacity import retry_if_exception, stop_after_attempt, wait_random_exponential

from payverify import __version__, http_deadline
from payverify.errors import InvalidGrant, SumUpUnavailable, TokenRefreshFailed
from payverify.secret import Secret
from payverify.sumup.answer import CONNECTION, NOT_SENT, NOT_UNDERSTOOD, TIMEOUT, http_failure
from payverify.sumup.checkout import plausible_checkout_id
from payverify.sumup.grant import TokenGrant, oauth_error, parse_grant
from payverify.sumup.ratelimit import RateLimiter, over_cap

MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Reply:
    """A reply SumUp actually gave that is not retried. `text` may be HTML or empty: never assume JSON."""

    status: int
    text: str


class RetryableReply(Exception):
    """SumUp answered 5xx or 429: worth another attempt, after `retry_after` seconds if it said so."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class OutOfTime(Exception):
    """The attempt used its whole wall-clock allowance (connect + read timeout): not retried."""


class ReplyCutOff(Exception):
    """The reply's status arrived but its body did not, in full or within the attempt's time budget."""

    def __init__(self, *, timed_out: bool) -> None:
        super().__init__("reply timed out" if timed_out else "reply cut off")
        self.timed_out = timed_out


# requests' ConnectionError includes ConnectTimeout, SSLError and ProxyError.
_TRANSIENT = (RetryableReply, ReplyCutOff, requests.exceptions.ConnectionError, requests.exceptions.Timeout,
              requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)


def is_retryable(exc: BaseException) -> bool:
    """Transient failures: no (complete) answer, a 5xx, or a 429."""
    return isinstance(exc, _TRANSIENT)


def is_retryable_before_reply(exc: BaseException) -> bool:
    """For the token endpoint: never re-send once a reply started (it may carry a rotated token)."""
    return is_retryable(exc) and not isinstance(exc, ReplyCutOff)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (number or HTTP date); None if absent or unusable."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class SumUpClient:
    """Talks to one SumUp base URL. `sleep` and `clock` are injectable so tests never really wait."""

    def __init__(self, base_url: str, *, connect_timeout: float = 5.0, read_timeout: float = 15.0,
                 max_attempts: int = 3,
                 wait: Callable[[tenacity.RetryCallState], float] | None = None,
                 session: requests.Session | None = None, user_agent: str = f"payverify/{__version__}",
                 before_request: Callable[[], None] | None = None,
                 limiter: RateLimiter | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if session is not None and session.verify is False:
            raise ValueError("TLS verification must stay on")
        self._base = base_url.rstrip("/")
        self._timeout = (connect_timeout, read_timeout)
        self._max_attempts = max_attempts
        self._wait = wait if wait is not None else wait_random_exponential(multiplier=0.5, max=10)
        self._owns_session = session is None
        self._session = session if session is not None else http_deadline.session()
        self._user_agent = user_agent
        self._before_request = before_request
        self._limiter = limiter
        self._sleep = sleep
        self._clock = clock

    def get_checkout(self, checkout_id: str, token: Secret) -> Reply:
        # Callers check first (an implausible id is not understood); this is the last line of defence.
        # safe="" quotes "/", "?" and "#" should the rule ever widen; a dot segment would be normalised away.
        if not plausible_checkout_id(checkout_id):
            raise ValueError("checkout id is not a plausible SumUp checkout id")
        url = f"{self._base}/v0.1/checkouts/{quote(checkout_id, safe='')}"
        return self._send("GET", url, headers=self._auth(token))

    def find_checkouts(self, checkout_reference: str, token: Secret) -> Reply:
        # An empty reference might list every checkout of the merchant: refuse it.
        if not checkout_reference:
            raise ValueError("checkout reference is empty")
        url = f"{self._base}/v0.1/checkouts"
        params = {"checkout_reference": checkout_reference}
        return self._send("GET", url, headers=self._auth(token), params=params)

    def get_me(self, token: Secret) -> Reply:
        """The account the token acts for (`merchant_profile.merchant_code`): a platform key names no merchant."""
        return self._send("GET", f"{self._base}/v0.1/me", headers=self._auth(token))

    def list_transactions(self, merchant_code: str, token: Secret, *,
                          params: dict[str, str | list[str]] | None = None,
                          next_query: str | None = None) -> Reply:
        """One page of the merchant's transaction history.

        `params` are the first page's filters (a list value repeats its key: `statuses[]`). `next_query`
        is a next link's `href`; it carries the original filters and the cursor, so it replaces `params`.
        """
        if merchant_code.strip(".") == "":
            raise ValueError("merchant code is empty or a dot segment")
        url = f"{self._base}/v2.1/merchants/{quote(merchant_code, safe='')}/transactions/history"
        if next_query is not None:
            # Only the href's query is used, on our own base URL and path: a link naming another host
            # or path must never take the bearer token there.
            return self._send("GET", f"{url}?{history_query(next_query)}", headers=self._auth(token))
        return self._send("GET", url, headers=self._auth(token), params=params)

    def get_transaction(self, merchant_code: str, token: Secret, transaction_code: str) -> Reply:
        """One transaction by its code (TransactionFull); 404 when the merchant has no such transaction."""
        if merchant_code.strip(".") == "" or not transaction_code:
            raise ValueError("merchant code or transaction code is empty")
        url = f"{self._base}/v2.1/merchants/{quote(merchant_code, safe='')}/transactions"
        return self._send("GET", url, headers=self._auth(token), params={"transaction_code": transaction_code})

    def refresh_token(self, refresh_token: Secret, client_id: str, client_secret: Secret) -> TokenGrant:
        """One attempt, no retry and no wait between attempts: the caller holds the artist's row lock,
        and a session dropped meanwhile would lose a rotated pair. Its slot in the rate limit is waited
        for at most the connect timeout, so the whole of it takes at most connect timeout + the
        attempt's connect + read timeouts. Failing, the order is asked again later."""
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token.reveal(),
                "client_id": client_id, "client_secret": client_secret.reveal()}
        reply = self._send("POST", f"{self._base}/token", headers={}, data=form, after_reply_retry=False,
                           attempts=1, slot_within=self._timeout[0])
        if reply.status == 200:
            return parse_grant(reply.text)
        error = oauth_error(reply.text)
        if reply.status in (400, 401) and error == "invalid_grant":
            raise InvalidGrant("SumUp refused the refresh token (invalid_grant): the artist must reconnect")
        detail = f" ({error})" if error else ""
        raise TokenRefreshFailed(f"token endpoint answered HTTP {reply.status}{detail}", http_status=reply.status)

    def close(self) -> None:
        """Close the session if this client created it (an injected session belongs to its owner)."""
        if self._owns_session:
            self._session.close()

    def _auth(self, token: Secret) -> dict[str, str]:
        return {"Authorization": f"Bearer {token.reveal()}"}

    def _send(self, method: str, url: str, *, headers: dict[str, str], after_reply_retry: bool = True,
              attempts: int | None = None, slot_within: float | None = None, **kwargs: Any) -> Reply:
        made = 0
        headers = {**headers, "Accept": "application/json", "User-Agent": self._user_agent}
        allowance = self._timeout[0] + self._timeout[1]

        def attempt() -> Reply:
            nonlocal made
            made += 1
            if self._before_request is not None:
                self._before_request()
            if self._limiter is not None:
                # raises, unsent, once the run is over, SumUp said wait too long or (slot_within) too far off
                self._limiter.acquire(within=slot_within)
            started = self._clock()
            with http_deadline.within(allowance) as deadline:
                try:
                    reply = self._attempt(method, url, headers, started, kwargs)
                except (RetryableReply, ReplyCutOff, requests.RequestException, urllib3.exceptions.HTTPError,
                        OSError):
                    if deadline.expired:
                        raise OutOfTime() from None
                    raise
                if deadline.expired:  # the watchdog cut it: whatever was read is not a whole reply
                    raise OutOfTime()
                return reply

        base = is_retryable if after_reply_retry else is_retryable_before_reply

        def predicate(exc: BaseException) -> bool:
            # SumUp asked us to wait longer than we may: retrying early would only be refused again.
            return base(exc) and not (isinstance(exc, RetryableReply) and over_cap(exc.retry_after))

        last: list[BaseException] = []

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            last[:] = [exc] if exc is not None else []

        retrying = tenacity.Retrying(stop=stop_after_attempt(attempts or self._max_attempts), wait=self._wait_for,
                                     retry=retry_if_exception(predicate), sleep=self._pause, reraise=True,
                                     before_sleep=before_sleep)
        try:
            return retrying(attempt)
        except _WaitCut:
            failure = _failure(last[0], made) if last else _not_sent()
        except (RetryableReply, ReplyCutOff, OutOfTime, requests.RequestException) as exc:
            failure = _failure(exc, made)
        raise failure from None  # outside the except block: no __context__ pointing at requests

    def _attempt(self, method: str, url: str, headers: dict[str, str], started: float,
                 kwargs: dict[str, Any]) -> Reply:
        # stream=True so the body read can be bounded in time and size; no redirects, so the
        # bearer token never follows a Location header (a 3xx comes back as a Reply).
        with self._session.request(method, url, headers=headers, timeout=self._timeout, stream=True,
                                   allow_redirects=False, **kwargs) as resp:
            if resp.status_code == 429 or resp.status_code >= 500:
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                if resp.status_code == 429 and self._limiter is not None:
                    self._limiter.rate_limited(retry_after)  # over the cap: nothing is sent until it passed
                raise RetryableReply(resp.status_code, retry_after)
            if self._limiter is not None:
                self._limiter.accepted()
            return Reply(resp.status_code, self._read_text(resp, started))

    def _pause(self, seconds: float) -> None:
        """The wait between attempts: the run's limiter's when there is one (it ends at the run's
        deadline or stop, and then the request is not tried again)."""
        if self._limiter is None:
            self._sleep(seconds)
        elif not self._limiter.wait(seconds):
            raise _WaitCut()

    def _wait_for(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableReply) and exc.retry_after is not None:
            return exc.retry_after
        return self._wait(state)

    def _read_text(self, resp: requests.Response, started: float) -> str:
        # The watchdog (http_deadline) cuts a trickling body at the attempt's deadline; the clock is
        # checked here as well, so the bound holds on an injected clock too. read1 returns after one
        # socket read (iter_content would block until a whole chunk arrived).
        deadline = started + self._timeout[0] + self._timeout[1]
        read = getattr(resp.raw, "read1", resp.raw.read)  # read1 needs urllib3 >= 2.3 (setup.cfg asks 2.7)
        body = bytearray()
        try:
            while chunk := read(64 * 1024, decode_content=True):
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    raise SumUpUnavailable("reply larger than 1 MiB", failure=NOT_UNDERSTOOD,
                                           http_status=resp.status_code)
                if self._clock() > deadline:
                    raise OutOfTime()
        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
            timed_out = isinstance(exc, (urllib3.exceptions.TimeoutError, requests.Timeout, TimeoutError))
            cut_off = ReplyCutOff(timed_out=timed_out)
        else:
            return _decode(resp, bytes(body))
        raise cut_off from None


class _WaitCut(Exception):
    """A wait between attempts ended early (the run's deadline or stop): no further attempt."""


def _not_sent() -> SumUpUnavailable:
    return SumUpUnavailable("not sent: the run stopped or reached its time budget", failure=NOT_SENT)


def history_query(href: str) -> str:
    """The query string of a history `next` link: a bare query ("limit=10&..."), "?..." or a URL/path.

    Raises ValueError when there is none: re-requesting the bare path would start again from page one.
    """
    href = href.strip().split("#", 1)[0]
    if "?" in href:
        query = href.split("?", 1)[1]
    elif href.startswith("/") or urlsplit(href).scheme:  # a URL or path without a query
        query = ""
    else:
        query = href
    if not query.strip("&"):
        raise ValueError("the next link carries no query string")
    return query


def _decode(resp: requests.Response, body: bytes) -> str:
    # Trust only an explicit charset; requests would guess ISO-8859-1 for any text/* type.
    declared = "charset" in resp.headers.get("Content-Type", "").lower()
    try:
        return body.decode((declared and resp.encoding) or "utf-8", errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def _failure(exc: BaseException, attempts: int) -> SumUpUnavailable:
    after = f"after {attempts} attempt{'' if attempts == 1 else 's'}"
    if isinstance(exc, RetryableReply):
        what = "rate limited (HTTP 429)" if exc.status == 429 else f"HTTP {exc.status}"
        return SumUpUnavailable(f"{what} {after}", failure=http_failure(exc.status), http_status=exc.status)
    if isinstance(exc, OutOfTime):
        return SumUpUnavailable(f"timed out {after}", failure=TIMEOUT)
    if isinstance(exc, ReplyCutOff):
        if exc.timed_out:
            return SumUpUnavailable(f"timed out {after}", failure=TIMEOUT)
        return SumUpUnavailable(f"reply cut off {after}", failure=CONNECTION)
    # ConnectTimeout is both a Timeout and a ConnectionError: a timeout, as its message says.
    if isinstance(exc, requests.exceptions.Timeout):
        return SumUpUnavailable(f"timed out {after}", failure=TIMEOUT)
    if isinstance(exc, requests.exceptions.SSLError):
        return SumUpUnavailable(f"TLS error {after}", failure=CONNECTION)
    if isinstance(exc, requests.exceptions.ConnectionError):
        return SumUpUnavailable(f"connection failed {after}", failure=CONNECTION)
    return SumUpUnavailable(f"request could not be sent ({type(exc).__name__})", failure=CONNECTION)

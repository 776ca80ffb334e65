"""The healthchecks.io-convention heartbeat: /start, success, /fail; a ping never fails a run."""

from __future__ import annotations

import time

import requests
import structlog

from payverify import http_deadline
from payverify.secret import Secret

log = structlog.get_logger("payverify.monitoring")


class Heartbeat:
    """healthchecks.io-convention pings; with no URL, no-ops. Each takes `timeout` s at most in all, a
    server trickling its reply included (payverify.http_deadline; one retry if time is left, none after a
    timeout or 4xx); never raises, never logs the URL (a secret)."""

    BODY_LIMIT = 10_000  # bytes; healthchecks.io shows the body in the check's log

    def __init__(self, url: Secret | None, *, timeout: float = 5.0, session: requests.Session | None = None) -> None:
        self._url = url.reveal().rstrip("/") if url else None
        self.timeout = timeout
        self._session = session

    def start(self) -> bool:
        return self._ping("start", "/start", "")

    def success(self, summary: str = "") -> bool:
        return self._ping("success", "", summary)

    def fail(self, summary: str = "") -> bool:
        return self._ping("fail", "/fail", summary)

    def _ping(self, signal: str, suffix: str, body: str) -> bool:
        if not self._url:
            return False
        if self._session is not None:
            return self._pings(self._session, signal, suffix, body)
        with http_deadline.session() as session:  # one per ping, as requests.post would: nothing kept open
            return self._pings(session, signal, suffix, body)

    def _pings(self, session: requests.Session, signal: str, suffix: str, body: str) -> bool:
        assert self._url is not None
        deadline = time.monotonic() + self.timeout
        for attempt in (1, 2):  # noqa: B007 - read after the loop: how many attempts were made
            left = max(0.01, deadline - time.monotonic())
            half = left / 2  # to connect, and for each read; the attempt as a whole gets `left`
            with http_deadline.within(left) as cut:
                try:
                    with session.post(self._url + suffix, data=body.encode()[:self.BODY_LIMIT],
                                      timeout=(half, half), stream=True) as resp:
                        ok = 200 <= resp.status_code < 300
                        problem, retry = f"HTTP {resp.status_code}", resp.status_code >= 500
                except requests.Timeout:
                    ok, problem, retry = False, "timed out", False
                except Exception as exc:  # noqa: BLE001 - never raise; a requests error's text names the URL
                    ok, problem = False, f"failed ({type(exc).__name__})"
                    retry = isinstance(exc, requests.RequestException)
            if cut.expired and not ok:  # the watchdog cut it (a trickle): what failed is the clock
                problem, retry = "timed out", False
            if ok:
                return True
            if not retry or deadline - time.monotonic() < 0.2:
                break
        log.warning("heartbeat.failed", signal=signal, problem=problem, attempts=attempt)
        return False

"""What SumUp said about one checkout, reduced to what the decision can use.

Three kinds: a checkout (SumUp answered with a checkout we understood), not found (a definitive 404),
or unknown (anything else: unreachable, timeout, 5xx, 429, 401 after one refresh, a body not
understood). Unknown never changes an order.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from payverify.errors import SumUpUnavailable
from payverify.sumup.checkout import BodyNotUnderstood, Checkout, parse_checkout

# SumUp request failures, by class: the metrics' `kind` label, set on the error or the answer where the
# trouble is seen. credentials: no usable token (artist disconnected, refresh failed, nothing configured).
# not_sent: the request was never sent, the run having stopped (SIGTERM) or reached its time budget
# while it waited (a rate-limit slot, a 429's pause, a retry): SumUp is not to blame.
FAILURES = (TIMEOUT, CONNECTION, HTTP_5XX, HTTP_429, HTTP_401, HTTP_OTHER, NOT_UNDERSTOOD, CREDENTIALS,
               NOT_SENT) = (
    "timeout", "connection", "http_5xx", "http_429", "http_401", "http_other", "not_understood", "credentials",
    "not_sent")


class AnswerKind(StrEnum):
    CHECKOUT = "checkout"
    NOT_FOUND = "not_found"
    UNKNOWN = "unknown"


@dataclass(frozen=True, kw_only=True)
class Answer:
    kind: AnswerKind
    reason: str = ""
    http_status: int | None = None
    checkout: Checkout | None = None
    # True when SumUp could not be reached at all (connection, timeout, 5xx, 429): the run reports it.
    # False for a request the run did not send (not_sent): that says nothing about SumUp.
    transport_failure: bool = False
    # One of FAILURES for an unknown answer that was asked for; None when definitive or not asked.
    failure: str | None = None

    @property
    def sumup_status(self) -> str | None:
        return self.checkout.status if self.checkout else None

    @classmethod
    def unknown(cls, reason: str, *, failure: str | None, http_status: int | None = None,
                transport_failure: bool = False) -> Answer:
        return cls(kind=AnswerKind.UNKNOWN, reason=reason, http_status=http_status,
                   transport_failure=transport_failure, failure=failure)

    @classmethod
    def unavailable(cls, exc: SumUpUnavailable) -> Answer:
        """No usable reply after retries: the failure is the one the client gave the error."""
        return cls.unknown(f"SumUp unavailable: {exc.reason}", failure=exc.failure, http_status=exc.http_status,
                           transport_failure=exc.failure != NOT_SENT)


def http_failure(status: int) -> str:
    """The failure class of a reply SumUp gave that is neither a checkout nor a 404."""
    if status == 429:
        return HTTP_429
    if status >= 500:
        return HTTP_5XX
    return HTTP_401 if status == 401 else HTTP_OTHER


def answer_from_reply(status: int, text: str) -> Answer:
    """Classify a reply SumUp actually gave (retries already exhausted for 5xx/429)."""
    if status == 200:
        try:
            return Answer(kind=AnswerKind.CHECKOUT, http_status=200, checkout=parse_checkout(text))
        except BodyNotUnderstood as exc:
            return Answer.unknown(f"SumUp's reply was not understood: {exc}", failure=NOT_UNDERSTOOD,
                                  http_status=200)
    if status == 404:
        return Answer(kind=AnswerKind.NOT_FOUND, http_status=404,
                      reason="SumUp has no such checkout for this merchant (HTTP 404)")
    if status == 401:
        reason = "SumUp refused the credentials (HTTP 401)"
    elif status == 403:
        reason = "SumUp refused access (HTTP 403)"
    else:
        reason = f"SumUp answered HTTP {status}"
    return Answer.unknown(reason, failure=http_failure(status), http_status=status)

"""What SumUp said about one checkout, reduced to what the decision can use.

Three kinds: a checkout (SumUp answered with a checkout we understood), not found (a definitive 404),
or unknown (anything else: unreachable, timeout, 5xx, 429, 401 after one refresh, a body not
understood). Unknown never changes an order.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from payverify.sumup.checkout import BodyNotUnderstood, Checkout, parse_checkout


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
    transport_failure: bool = False

    @property
    def sumup_status(self) -> str | None:
        return self.checkout.status if self.checkout else None

    @classmethod
    def unknown(cls, reason: str, *, http_status: int | None = None, transport_failure: bool = False) -> "Answer":
        return cls(kind=AnswerKind.UNKNOWN, reason=reason, http_status=http_status,
                   transport_failure=transport_failure)


def answer_from_reply(status: int, text: str) -> Answer:
    """Classify a reply SumUp actually gave (retries already exhausted for 5xx/429)."""
    if status == 200:
        try:
            return Answer(kind=AnswerKind.CHECKOUT, http_status=200, checkout=parse_checkout(text))
        except BodyNotUnderstood as exc:
            return Answer.unknown(f"SumUp's reply was not understood: {exc}", http_status=200)
    if status == 404:
        return Answer(kind=AnswerKind.NOT_FOUND, http_status=404,
                      reason="SumUp has no such checkout for this merchant (HTTP 404)")
    if status == 401:
        return Answer.unknown("SumUp refused the credentials (HTTP 401)", http_status=401)
    if status == 403:
        return Answer.unknown("SumUp refused access (HTTP 403)", http_status=403)
    return Answer.unknown(f"SumUp answered HTTP {status}", http_status=status)


# SumUp error kinds, the `kind` label. credentials: no usable token (artist disconnected, refresh failed).
ERROR_KINDS = (TIMEOUT, CONNECTION, HTTP_5XX, HTTP_429, HTTP_401, HTTP_OTHER, NOT_UNDERSTOOD, CREDENTIALS) = (
    "timeout", "connection", "http_5xx", "http_429", "http_401", "http_other", "not_understood", "credentials")


def sumup_error_kind(answer: Answer) -> str | None:
    """The kind of trouble behind a non-definitive answer; None for a definitive one or when not asked."""
    status = answer.http_status
    if answer.kind is not AnswerKind.UNKNOWN:
        return None
    if status == 429 or (status is not None and status >= 500):
        return HTTP_429 if status == 429 else HTTP_5XX
    if answer.transport_failure:  # with a status: a reply too large to read
        return NOT_UNDERSTOOD if status is not None else TIMEOUT if "timed out" in answer.reason else CONNECTION
    if status is not None:
        return {401: HTTP_401, 200: NOT_UNDERSTOOD}.get(status, HTTP_OTHER)
    return None if answer.reason.startswith("not asked") else CREDENTIALS

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

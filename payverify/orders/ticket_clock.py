"""When the customer started waiting for their tickets: the start of an order's time to ticket.

Time to ticket runs from this start to the SMTP server accepting the confirmation (the outbox row's
sent_at). An order the site marked `pending_verification` started waiting when the customer came
back from SumUp (the site sets `updated_at` then). An order payverify finds still `pending` (the
customer paid and never came back), or one it rescues from failed/expired, started waiting when SumUp
took the payment: the SUCCESSFUL transaction's timestamp. Pure: no I/O, no clock of its own.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from payverify.models import PENDING_VERIFICATION, Order
from payverify.sumup.checkout import Checkout

# How far the site's web servers, SumUp and the database may disagree about the time.
CLOCK_SKEW = timedelta(minutes=5)


def clock_start(order: Order, checkout: Checkout | None, now: datetime) -> datetime | None:
    """The start for an order payverify settles as paid at `now` (the database's clock); None when
    it is not known: no timestamp, or one that cannot be right."""
    start: datetime | None
    if order.status == PENDING_VERIFICATION:
        start = order.updated_at
    else:
        payment = checkout.payment if checkout is not None else None
        start = payment.timestamp if payment is not None else None
    return plausible(start, earliest=order.created_at, now=now)


def plausible(start: datetime | None, *, earliest: datetime, now: datetime) -> datetime | None:
    """`start` kept within [earliest, now], so a time to ticket is never negative. A start off by no
    more than CLOCK_SKEW (another machine's clock) is clamped into the range: the wait it gives is off
    by that skew at most. One further out (after the settle, or before the order existed) is bad
    data and dropped: no number is better than a wrong one in the histogram."""
    if start is None or start > now + CLOCK_SKEW or start < earliest - CLOCK_SKEW:
        return None
    return min(max(start, earliest), now)

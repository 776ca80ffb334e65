"""Time to ticket, the pure parts: SumUp's transaction timestamp."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from payverify.sumup.checkout import checkout_from_dict
from tests.factories import PAID_AT_SUMUP, TRANSACTION_CODE, checkout_body, transaction

PAID_AT = datetime(2026, 11, 26, 19, 51, 30, 250000, tzinfo=UTC)  # PAID_AT_SUMUP


def _checkout(**transaction_overrides):
    return checkout_from_dict(checkout_body(transactions=[transaction(**transaction_overrides)]))


# ---- SumUp's transaction timestamp ---------------------------------------------------------------


def test_transaction_timestamp_is_parsed_timezone_aware():
    """SumUp's `...Z` timestamp becomes an aware datetime, to the millisecond."""
    assert PAID_AT_SUMUP == "2026-11-26T19:51:30.250Z"
    stamp = _checkout().transactions[0].timestamp
    assert stamp == PAID_AT and stamp.utcoffset() == timedelta(0)
    assert _checkout(timestamp="2026-11-26T20:51:30+01:00").transactions[0].timestamp == PAID_AT.replace(
        microsecond=0)


@pytest.mark.parametrize("bad", ["2026-11-26T19:51:30", "2026-11-26", "yesterday", "", "2026-13-40T25:00:00Z",
                                 1764186690, None, {"at": 1}])
def test_a_bad_timestamp_is_none_and_the_checkout_still_understood(bad):
    """No zone, not a time, not a string: None. The body is not refused for it (the
    decision never reads the timestamp), so the order still settles."""
    checkout = _checkout(timestamp=bad)
    assert checkout.transactions[0].timestamp is None
    assert checkout.status == "PAID" and checkout.payment is checkout.transactions[0]


def test_payment_is_the_successful_transaction_the_checkout_names():
    """Of several transactions, the SUCCESSFUL one whose code is the checkout's; else the first SUCCESSFUL."""
    failed = transaction(id="t0", transaction_code="TFAILED", status="FAILED", timestamp="2026-11-26T19:40:00Z")
    other = transaction(id="t2", transaction_code="TOTHER", timestamp="2026-11-26T19:45:00Z")
    named = transaction()
    checkout = checkout_from_dict(checkout_body(transactions=[failed, other, named]))
    assert checkout.payment is not None and checkout.payment.transaction_code == TRANSACTION_CODE
    unnamed = checkout_from_dict(checkout_body(transaction_code=None, transactions=[failed, other, named]))
    assert unnamed.payment is not None and unnamed.payment.transaction_code == "TOTHER"
    assert checkout_from_dict(checkout_body(transactions=[failed])).payment is None

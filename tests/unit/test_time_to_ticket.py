"""Time to ticket, the pure parts: SumUp's transaction timestamp, where an order's clock starts, what
is done with a start that cannot be right, which message carries it, the histogram's text, and how
`check` writes the number."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from payverify.cli.report import duration
from payverify.config import Policy, load_settings
from payverify.mail.kinds import ALERT_LATE_PAYMENT, CONFIRMATION
from payverify.monitoring import render_metrics
from payverify.monitoring.metrics import TIME_TO_TICKET_BUCKETS, histogram
from payverify.orders import decision, notices
from payverify.orders.ticket_clock import CLOCK_SKEW, clock_start, plausible
from payverify.sumup.checkout import checkout_from_dict
from tests.factories import (
    NOW,
    PAID_AT_SUMUP,
    TRANSACTION_CODE,
    checkout_answer,
    checkout_body,
    make_item,
    make_order,
    transaction,
)
from tests.observers import histogram_buckets, parse_prometheus, value

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


# ---- where the clock starts ----------------------------------------------------------------------


def test_pending_verification_starts_when_the_site_marked_it():
    """pending_verification: the order's updated_at, not SumUp's timestamp."""
    order = make_order(status="pending_verification", updated_at=NOW - timedelta(minutes=3))
    assert clock_start(order, _checkout(), NOW) == NOW - timedelta(minutes=3)


@pytest.mark.parametrize("status", ["pending", "failed", "expired"])
def test_pending_and_rescued_orders_start_at_the_payment(status):
    """pending (never came back), failed/expired (rescued): SumUp's SUCCESSFUL transaction timestamp."""
    order = make_order(status=status, updated_at=NOW - timedelta(minutes=1))
    assert clock_start(order, _checkout(), NOW) == PAID_AT


def test_no_start_without_a_timestamp():
    """pending with no SUCCESSFUL transaction, no timestamp, or no checkout at all: no start."""
    order = make_order(status="pending")
    assert clock_start(order, _checkout(timestamp="not a time"), NOW) is None
    assert clock_start(order, _checkout(status="FAILED"), NOW) is None
    assert clock_start(order, None, NOW) is None


def test_a_start_slightly_in_the_future_is_clamped_to_now():
    """Another machine's clock a little ahead: the start is now (a wait of 0, never negative)."""
    order = make_order(updated_at=NOW + timedelta(seconds=40))
    assert clock_start(order, None, NOW) == NOW
    assert clock_start(make_order(updated_at=NOW + CLOCK_SKEW), None, NOW) == NOW


def test_a_start_far_in_the_future_is_dropped():
    """More than the skew ahead of the database: bad data, no start."""
    assert clock_start(make_order(updated_at=NOW + CLOCK_SKEW + timedelta(seconds=1)), None, NOW) is None
    paid_next_year = _checkout(timestamp="2027-11-26T19:51:30Z")
    assert clock_start(make_order(status="pending"), paid_next_year, NOW) is None


def test_a_start_before_the_order_existed():
    """A little before created_at is skew (clamped to created_at); far before is bad data (dropped)."""
    created = NOW - timedelta(minutes=10)
    assert plausible(created - timedelta(minutes=2), earliest=created, now=NOW) == created
    assert plausible(created - CLOCK_SKEW - timedelta(seconds=1), earliest=created, now=NOW) is None
    epoch = _checkout(timestamp="1970-01-01T00:00:00Z")
    assert clock_start(make_order(status="pending"), epoch, NOW) is None


def test_a_plausible_start_is_kept_as_it_is():
    """Inside [created_at, now] the start is not touched, however long the wait (a replay after days)."""
    created = NOW - timedelta(days=9)
    start = NOW - timedelta(days=8, minutes=7)
    assert plausible(start, earliest=created, now=NOW) == start


# ---- the message that carries it ------------------------------------------------------------------


def test_only_the_confirmation_carries_the_start():
    """A rescued order's confirmation carries the start; its late-payment alert does not."""
    order = make_order(status="expired")
    answer = checkout_answer()
    choice = decision.decide(order, [make_item()], answer, NOW, Policy())
    assert choice.notify == (CONFIRMATION, ALERT_LATE_PAYMENT)
    settings = load_settings(environ={"PAYVERIFY_DATABASE_URL": "postgresql://localhost/x"})
    messages = notices.messages_for(choice, order, [make_item()], answer.checkout, settings,
                                    ticket_clock_started_at=PAID_AT)
    assert {m.kind: m.ticket_clock_started_at for m in messages} == {CONFIRMATION: PAID_AT, ALERT_LATE_PAYMENT: None}
    assert all(m.ticket_clock_started_at is None
               for m in notices.messages_for(choice, order, [make_item()], answer.checkout, settings))


# ---- the histogram ---------------------------------------------------------------------------------


def test_histogram_text_is_cumulative_and_ends_at_inf():
    """Each bucket counts the observations at most its bound, +Inf all of them; _sum and _count follow."""
    # Observations 0.4, 3, 3, 45, 700 s: at most 1 -> 1, 2 -> 1, 5 -> 3, 10 -> 3, 30 -> 3, 60 -> 4, ... 600 -> 4.
    at_most = [1, 1, 3, 3, 3, 4, 4, 4, 4, 5]
    text = render_metrics([histogram("payverify_time_to_ticket_seconds", "Time to ticket.", TIME_TO_TICKET_BUCKETS,
                                     at_most, 5, 751.4)])
    assert "# TYPE payverify_time_to_ticket_seconds histogram" in text
    assert 'payverify_time_to_ticket_seconds_bucket{le="1"} 1\n' in text
    assert 'payverify_time_to_ticket_seconds_bucket{le="+Inf"} 5\n' in text
    samples = parse_prometheus(text)
    assert histogram_buckets(samples, "payverify_time_to_ticket_seconds") == [
        (1, 1), (2, 1), (5, 3), (10, 3), (30, 3), (60, 4), (120, 4), (300, 4), (600, 4), (1800, 5),
        (float("inf"), 5)]
    assert value(samples, "payverify_time_to_ticket_seconds_count") == 5
    assert value(samples, "payverify_time_to_ticket_seconds_sum") == pytest.approx(751.4)
    assert text.index('le="1"}') < text.index('le="2"}') < text.index('le="+Inf"}') < text.index("_sum ")


def test_the_parser_refuses_a_histogram_that_is_not_cumulative():
    """The test's own reader fails on buckets that go down or a +Inf that is not the count."""
    going_down = histogram("h", "h.", (1, 2), [3, 2], 3, 1.0)
    with pytest.raises(AssertionError, match="not cumulative"):
        parse_prometheus(render_metrics([going_down]))
    short_inf = render_metrics([histogram("h", "h.", (1, 2), [1, 2], 3, 1.0)]).replace('le="+Inf"} 3', 'le="+Inf"} 2')
    with pytest.raises(AssertionError, match="not the count"):
        parse_prometheus(short_inf)


def test_check_writes_the_seconds_and_what_they_mean():
    """Whole seconds as the metrics count them, then minutes (or hours) for a person."""
    assert [duration(s) for s in (0.4, 42.4, 59.6, 182, 3599, 5410)] == [
        "0 s", "42 s", "60 s (1m 00s)", "182 s (3m 02s)", "3599 s (59m 59s)", "5410 s (1h30m)"]

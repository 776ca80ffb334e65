"""payverify.sumup.body: one parser for every SumUp body, one rule each for numbers, amounts and times,
and the three readers (checkout, history, token endpoint) keeping to them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from payverify.sumup import body
from payverify.sumup.checkout import BodyNotUnderstood, parse_checkout
from payverify.sumup.history import parse_item, parse_page

# Times that exist as ISO 8601 but cannot be placed in UTC, or are far outside any payment's life.
OVERFLOWING = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]
OUT_OF_RANGE = [*OVERFLOWING, "9999-12-31T00:00:00Z", "0001-01-01T00:00:00Z", "1999-12-31T23:59:59Z",
                "2100-01-01T00:00:00Z"]


def _numbers(tree: Any) -> list[Any]:
    if isinstance(tree, dict):
        return [n for v in tree.values() for n in _numbers(v)]
    if isinstance(tree, list):
        return [n for v in tree for n in _numbers(v)]
    return [tree] if isinstance(tree, int | float | Decimal) and not isinstance(tree, bool) else []


# -- loads: numbers exact, never float ---------------------------------------------------------------

def test_loads_never_makes_a_float():
    """Every number with a fraction or an exponent is a Decimal written exactly as sent; NaN and
    Infinity too (Python's json would make them floats)."""
    data = body.loads('{"a": 10.10, "b": [1e2, -0.0, 1E-7], "c": NaN, "d": Infinity, "e": -Infinity}')
    assert not any(isinstance(n, float) for n in _numbers(data))
    assert str(data["a"]) == "10.10" and data["b"][0] == Decimal("1E+2")
    assert data["c"].is_nan() and data["d"] == Decimal("Infinity") and data["e"] == Decimal("-Infinity")


def test_loads_keeps_integers_as_ints():
    """Integers stay ints: ids, counts and expires_in are usable as they are."""
    data = body.loads('{"installments_count": 1, "expires_in": 3599, "amount": 25}')
    assert data == {"installments_count": 1, "expires_in": 3599, "amount": 25}
    assert all(type(v) is int for v in data.values())


@pytest.mark.parametrize("text, described", [
    ("", "empty"), ("   ", "empty"), ("<html>502 Bad Gateway CANARY</html>", "looks like HTML"),
    ('{"amount": 2', "12 characters"), ("[" * 100000, "100000 characters"), ("1" * 5000, "5000 characters"),
])
def test_loads_refuses_what_is_not_json_quoting_nothing(text, described):
    """Not JSON (empty, HTML, cut off, absurdly nested, an integer Python refuses to convert): NotJSON,
    a ValueError saying what it looked like without quoting it."""
    with pytest.raises(body.NotJSON) as caught:
        body.loads(text)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value) == f"body is not JSON ({described})" and "CANARY" not in str(caught.value)


def test_loads_object_wants_an_object():
    """A body that must be an object: a list, a string or a number is NotJSON, naming its type."""
    assert body.loads_object('{"a": 1}') == {"a": 1}
    for text, kind in (("[1]", "list"), ('"x"', "str"), ("2.5", "Decimal")):
        with pytest.raises(body.NotJSON, match=f"is a JSON {kind}, not an object"):
            body.loads_object(text)


# -- amount: one set of bounds -----------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("25", Decimal("25")), ("25.0", Decimal("25.0")), ("25.00", Decimal("25.00")), ("10.1", Decimal("10.1")),
    ("0", Decimal(0)), ("-12.5", Decimal("-12.5")), ("0.12345678", Decimal("0.12345678")),
    ("999999999999.99", Decimal("999999999999.99")), ("1e2", Decimal("1E+2")),
])
def test_amount_from_an_integer_or_a_decimal(text, expected):
    """An amount written as an integer or with decimals is the same Decimal, kept exactly."""
    parsed = body.amount(body.loads(text))
    assert isinstance(parsed, Decimal) and parsed == expected and str(parsed) == str(expected)


@pytest.mark.parametrize("value", [
    None, True, False, "25.00", [25], {"value": 25}, 25.0,  # a float never comes from loads: refused too
    Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), Decimal(10) ** 12, -(Decimal(10) ** 12),
    10 ** 12, Decimal("0.123456789"), Decimal("1e400"),
])
def test_amount_refuses_what_is_not_one(value):
    """A string, bool, float, non-finite value, one of 10^12 or more, or more than 8 decimals: None."""
    assert body.amount(value) is None


# -- timestamp: aware, in UTC, in range --------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("2026-08-20T10:03:12.876Z", datetime(2026, 8, 20, 10, 3, 12, 876000, tzinfo=UTC)),
    ("2026-08-20T11:03:12.876+01:00", datetime(2026, 8, 20, 10, 3, 12, 876000, tzinfo=UTC)),
    (" 2026-08-20T10:00:00.000+00:00 ", datetime(2026, 8, 20, 10, tzinfo=UTC)),
    ("2000-01-01T00:00:00Z", datetime(2000, 1, 1, tzinfo=UTC)),
])
def test_timestamp_is_aware_and_in_utc(text, expected):
    """A time with a zone is read and converted to UTC."""
    parsed = body.timestamp(text)
    assert parsed == expected and parsed is not None and parsed.tzinfo is UTC


@pytest.mark.parametrize("value", [None, 1755684192, "", "yesterday", "2026-08-20T10:03:12", "2026-13-01T00:00:00Z"])
def test_timestamp_without_a_zone_or_not_a_time_is_none(value):
    """Not a string, not ISO 8601, or without a zone (it cannot be placed): None."""
    assert body.timestamp(value) is None


@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_timestamp_out_of_range_is_none_never_overflow(text):
    """Year 1 east of UTC and year 9999 west of it overflow a conversion to UTC; they, and any time
    before 2000 or from 2100 on, are None (not understood), never an OverflowError."""
    assert body.timestamp(text) is None


# -- the readers keep to the rules --------------------------------------------------------------------

def _checkout(amount: str, timestamp: str = "2026-08-20T10:03:12.876Z") -> str:
    return ('{"id": "c1", "checkout_reference": "JE-1", "status": "PAID", "currency": "GBP",'
            f' "amount": {amount}, "transactions": [{{"status": "SUCCESSFUL", "amount": {amount},'
            f' "currency": "GBP", "timestamp": "{timestamp}"}}]}}')


@pytest.mark.parametrize("amount", ["25", "25.0", "25.00"])
def test_checkout_amount_from_an_integer_or_a_decimal(amount):
    """A checkout's amount and its transaction's amount: Decimal 25 however SumUp wrote it."""
    checkout = parse_checkout(_checkout(amount))
    assert isinstance(checkout.amount, Decimal) and checkout.amount == 25
    assert isinstance(checkout.transactions[0].amount, Decimal) and checkout.transactions[0].amount == 25


@pytest.mark.parametrize("amount", ["1e12", "-1000000000000", "0.123456789", "NaN", "Infinity", '"25.00"', "true"])
def test_checkout_and_history_refuse_the_same_amounts(amount):
    """The bounds are body.py's, for both: a checkout with such an amount is not understood; a
    history item with one keeps the rest and has no amount."""
    with pytest.raises(BodyNotUnderstood, match="amount is not a plausible amount"):
        parse_checkout(_checkout(amount))
    (item,) = parse_page(f'{{"items": [{{"transaction_code": "T1", "amount": {amount}}}]}}').items
    assert item.amount is None and item.transaction_code == "T1"
    assert parse_item(f'{{"transaction_code": "T1", "amount": {amount}}}').amount is None


@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_history_timestamp_out_of_range_is_skipped_not_fatal(text):
    """A history item (or a single transaction) timestamped year 1 at +01:00 or year 9999: the page
    is read, the item has no timestamp (the run skips judging it), no OverflowError."""
    page = parse_page(json.dumps({"items": [{"transaction_code": "T1", "amount": 5, "timestamp": text},
                                            {"transaction_code": "T2", "timestamp": "2026-08-20T10:00:00Z"}]}))
    assert [(i.transaction_code, i.timestamp) for i in page.items] == \
           [("T1", None), ("T2", datetime(2026, 8, 20, 10, tzinfo=UTC))]
    assert parse_item(json.dumps({"transaction_code": "T1", "timestamp": text})).timestamp is None


@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_checkout_transaction_timestamp_out_of_range_is_none(text):
    """A checkout transaction's timestamp out of range is None (it only times the confirmation); the
    checkout itself is understood."""
    checkout = parse_checkout(_checkout("25.00", text))
    assert checkout.status == "PAID" and checkout.transactions[0].timestamp is None


@pytest.mark.parametrize("text", ["<html>x</html>", "", "[1, 2]", '{"status": "PAID", "amount": 1'])
def test_checkout_not_json_is_not_understood(text):
    """A checkout body that is not a JSON object is not understood (BodyNotUnderstood), from body.py's message."""
    with pytest.raises(BodyNotUnderstood, match="body is"):
        parse_checkout(text)


# -- properties ----------------------------------------------------------------------------------------

offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))


@hsettings(max_examples=300, deadline=None)
@given(st.one_of(st.datetimes(timezones=offsets).map(datetime.isoformat), st.datetimes().map(datetime.isoformat),
                 st.text(max_size=40)))
def test_any_time_string_is_in_range_or_none(text):
    """Whatever the string (any year, any offset, none, or not a time at all): never an exception; a
    time in UTC within [EARLIEST, LATEST), or None."""
    parsed = body.timestamp(text)
    assert parsed is None or (parsed.tzinfo is UTC and body.EARLIEST <= parsed < body.LATEST)


@hsettings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(), st.decimals(allow_nan=False, allow_infinity=False), st.floats()))
def test_any_json_number_is_an_exact_amount_or_none(number):
    """Any number SumUp could write, as loads parses it: never a float, and an amount is the number
    itself (exactly) within the bounds, else None."""
    text = json.dumps(number) if not isinstance(number, Decimal) else str(number)
    parsed = body.loads(text)
    assert not isinstance(parsed, float)
    amount = body.amount(parsed)
    if amount is not None:
        assert isinstance(amount, Decimal) and amount == Decimal(text) and abs(amount) < body.MAX_AMOUNT

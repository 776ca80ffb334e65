"""SumUp's JSON bodies as Python: the one parser for checkouts, history pages, single transactions,
/v0.1/me and the token endpoint, with the rules for amounts and times in one place.

- Numbers are exact, never float: a number with a fraction or an exponent becomes Decimal; an
  integer stays an int, so ids, counts and `expires_in` stay usable as ints. `amount()` takes either:
  SumUp writes `25`, `25.0` or `25.00` for the same amount (SUMUP.md: "a JSON number ... e.g. `10.1`
  or `12`"). NaN and Infinity (not JSON, but Python's parser takes them) become Decimal NaN/Infinity,
  which no amount accepts.
- An amount is finite, below MAX_AMOUNT and has at most MAX_DECIMALS decimals; anything else (a
  string, a bool, an absurd value) is not an amount.
- A time is an ISO 8601 string with a zone, in UTC, within [EARLIEST, LATEST). Out of that range it
  is not understood (None), so nothing downstream can overflow converting or shifting it (year 1 at
  +01:00 is before datetime.min in UTC).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

# Beyond these an "amount" is not one (and would overflow Decimal arithmetic downstream).
MAX_AMOUNT = Decimal(10) ** 12
MAX_DECIMALS = 8

# SumUp started in 2012: a payment outside this range is bad data, not a payment.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


class NotJSON(ValueError):
    """The text is not a JSON document (HTML from a gateway, empty, cut off, absurdly nested)."""


def loads(text: str) -> Any:
    """The JSON document in `text`, numbers exact (see the module's docstring). Raises NotJSON."""
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=Decimal)
    except (ValueError, RecursionError):
        raise NotJSON(f"body is not JSON ({describe(text)})") from None


def loads_object(text: str) -> dict[str, Any]:
    """Like loads, for a body that must be a JSON object. Raises NotJSON."""
    data = loads(text)
    if not isinstance(data, dict):
        raise NotJSON(f"body is a JSON {type(data).__name__}, not an object")
    return data


def amount(value: Any) -> Decimal | None:
    """`value` (as loads parsed it) as an amount in major units; None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return None
    exact = Decimal(value) if isinstance(value, int) else value
    exponent = exact.as_tuple().exponent  # an int for a finite value; "n", "N" or "F" otherwise
    if not isinstance(exponent, int) or abs(exact) >= MAX_AMOUNT or exponent < -MAX_DECIMALS:
        return None
    return exact


def timestamp(value: Any) -> datetime | None:
    """`value` as a time in UTC; None when absent, not ISO 8601, without a zone (it cannot be placed)
    or outside [EARLIEST, LATEST)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
        if parsed.utcoffset() is None:
            return None
        utc = parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 east of UTC, year 9999 west of it
        return None
    return utc if EARLIEST <= utc < LATEST else None


def describe(text: str) -> str:
    """What a body that is not JSON looks like, in a few words that quote nothing of it."""
    stripped = text.lstrip()
    if not stripped:
        return "empty"
    if stripped.startswith("<"):
        return "looks like HTML"
    return f"{len(text)} characters"

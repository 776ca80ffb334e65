"""Command-line value types: bad input is refused here, with one line, before any work starts."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import click

from payverify.config import MAX_RETENTION_DAYS

_SPAN = re.compile(r"^(\d+)\s*([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
# A replay reaches back at most this far: older orders are a matter for staff, not a sweep.
MAX_REACH = timedelta(days=366)


def parse_since(text: str, now: datetime) -> datetime:
    """ISO 8601 date or datetime (naive means UTC), or a span back from now: 90m, 48h, 7d."""
    value = text.strip()
    span = _SPAN.match(value)
    if span:
        try:
            reach = timedelta(**{_UNITS[span[2]]: int(span[1])})
        except OverflowError:
            reach = MAX_REACH * 2
        if reach > MAX_REACH:
            raise ValueError(f"{text!r} reaches back more than {MAX_REACH.days} days")
        return now - reach
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            parsed = datetime.combine(date.fromisoformat(value), datetime.min.time())
        else:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 date/datetime or a span like 90m, 48h, 7d") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if parsed > now:
        raise ValueError(f"{text!r} is in the future")
    if now - parsed > MAX_REACH:
        raise ValueError(f"{text!r} reaches back more than {MAX_REACH.days} days")
    return parsed


class Since(click.ParamType):
    name = "SINCE"

    def convert(self, value, param, ctx):
        if isinstance(value, datetime):
            return value
        try:
            return parse_since(value, datetime.now(UTC))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


_DAYS = re.compile(r"^(\d{1,6})\s*d?$")


class Days(click.ParamType):
    """A number of days, `90d` or `90`, from 1 to MAX_RETENTION_DAYS."""

    name = "DAYS"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        found = _DAYS.match(str(value).strip())
        if not found or not 1 <= int(found[1]) <= MAX_RETENTION_DAYS:
            self.fail(f"{value!r} is not a number of days from 1 to {MAX_RETENTION_DAYS} (e.g. 90d or 90)",
                      param, ctx)
        return int(found[1])


class EmailAddress(click.ParamType):
    """One plain e-mail address (no display name, no list, no control characters)."""

    name = "ADDRESS"

    def convert(self, value, param, ctx):
        from payverify.mail.message import BadAddress, address

        try:
            return address(str(value).strip()).addr_spec
        except BadAddress:
            self.fail(f"{value!r} is not a single e-mail address", param, ctx)


class OrderRef(click.ParamType):
    """An order number (as the customer sees it) or the order's numeric id."""

    name = "ORDER"

    def convert(self, value, param, ctx):
        text = str(value).strip()
        if not text or len(text) > 64 or any(ord(c) < 32 for c in text):
            self.fail(f"{value!r} is not an order number or id", param, ctx)
        return text


class RoleName(click.ParamType):
    """A Postgres role name that GRANT can name exactly."""

    name = "ROLE"

    def convert(self, value, param, ctx):
        from payverify.db.grants import role_name_problem

        problem = role_name_problem(str(value))
        if problem:
            self.fail(f"{value!r} {problem}", param, ctx)
        return str(value)

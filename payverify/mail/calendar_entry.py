"""The .ics calendar entry for a ticket email: one VEVENT for the event, times in UTC.

The icalendar library does the RFC 5545 work (escaping of , ; \\ and newlines, line folding, CRLF).
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta

from icalendar import Calendar, Event

from payverify.mail.documents import EventInfo

__all__ = ["DEFAULT_DURATION", "EventInfo", "event_ics"]

# When the site recorded no end (or an end not after the start), the entry lasts this long.
DEFAULT_DURATION = timedelta(hours=3)


def _text(value: str) -> str:
    """Text without control characters (newlines kept, as \\n, for icalendar to escape)."""
    value = str(value).replace("\r\n", "\n").replace("\r", "\n")
    return "".join(ch for ch in value if ch == "\n" or unicodedata.category(ch) not in ("Cc", "Cs"))


def event_ics(*, event: EventInfo, order_number: str, site_name: str, domain: str,
              stamp: datetime | None = None) -> bytes:
    """An iCalendar file (METHOD:PUBLISH) with the event; UID stable per event, so a resend updates it.

    stamp is the DTSTAMP (when this entry was made): now, unless given (tests, reproducible output).
    """
    start = event.starts_at.astimezone(UTC)
    end = event.ends_at.astimezone(UTC) if event.ends_at is not None else None
    if end is None or end <= start:
        end = start + DEFAULT_DURATION
    site = " ".join(_text(site_name).split()).replace("//", "/") or "Tickets"
    order = " ".join(_text(order_number).split())

    calendar = Calendar()
    calendar.add("prodid", f"-//payverify//{site}//EN")
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    entry = Event()
    entry.add("uid", f"event-{event.id}@{_text(domain).strip()}")
    entry.add("dtstamp", (stamp or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0))
    entry.add("dtstart", start)
    entry.add("dtend", end)
    entry.add("summary", _text(event.title))
    entry.add("location", _text(event.venue))
    entry.add("description", f"Your tickets from {site}, order {order}. "
                             "Show each ticket's code or QR code at the door.")
    entry.add("transp", "OPAQUE")
    calendar.add_component(entry)
    return calendar.to_ical()

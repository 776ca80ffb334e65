"""The ticket email's attachments: the tickets PDF (read back with pypdf) and the .ics entry."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime, timedelta

import pypdf
import pytest
import segno
from icalendar import Calendar
from pypdf.generic import ContentStream

from payverify.mail import ticket_pdf
from payverify.mail.calendar_entry import event_ics
from payverify.mail.documents import EventInfo, TicketInfo
from payverify.mail.ticket_pdf import tickets_pdf

SUMMER = datetime(2026, 7, 11, 18, 30, tzinfo=UTC)  # 19:30 BST in Jersey
WINTER = datetime(2026, 12, 12, 18, 30, tzinfo=UTC)  # 18:30 GMT
CODES = ["Qm9vdHN0cmFwQ29kZTAwMDAwMDAwMDAw", "c2Vjb25kLXRpY2tldC1jb2RlLXh5ejEy", "dGhpcmRfdGlja2V0X2NvZGVfYWJjZGVm"]


def event(starts_at: datetime = SUMMER, **changes) -> EventInfo:
    fields = {"id": 42, "title": "Harbour Lights", "venue": "Fort Regent", "starts_at": starts_at,
              "ends_at": None} | changes
    return EventInfo(**fields)


def render(tickets: list[TicketInfo], ev: EventInfo | None = None, order: str = "ORD-2026-0042") -> bytes:
    return tickets_pdf(event=ev or event(), order_number=order, tickets=tickets,
                       site_name="Coderra Tickets", timezone="Europe/Jersey")


def pages(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages]


def drawn_qr(pdf: bytes, index: int, size: int) -> tuple[set[tuple[int, int]], float]:
    """The dark QR modules a page fills (row, column, quiet zone excluded) and the module size in mm.

    The QR is drawn as filled rectangles (`re` then `f`), each covering whole dark modules, and nothing
    else on the page is one. Their bounding box is the symbol (finder patterns fill three corners), so
    a module is its width over the symbol's `size`; every edge must fall on that module grid."""
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    boxes, pending = [], None
    for operands, op in ContentStream(reader.pages[index].get_contents(), reader).operations:
        if op == b"f" and pending:
            x, y, w, h = pending
            boxes.append((x, min(y, y + h), x + w, max(y, y + h)))  # points, y upwards
        pending = [float(v) for v in operands] if op == b"re" else None
    left, bottom = min(b[0] for b in boxes), min(b[1] for b in boxes)
    right, top = max(b[2] for b in boxes), max(b[3] for b in boxes)
    module = (right - left) / size
    assert abs((top - bottom) - (right - left)) < 0.05, "the symbol is not square"

    def grid(offset: float) -> int:
        assert abs(offset / module - round(offset / module)) < 0.02, "an edge off the module grid"
        return round(offset / module)

    dark = set()
    for x0, y0, x1, y1 in boxes:
        dark |= {(row, col) for row in range(grid(top - y1), grid(top - y0))
                 for col in range(grid(x0 - left), grid(x1 - left))}
    return dark, module * 25.4 / 72


def expected_qr(code: str) -> set[tuple[int, int]]:
    matrix = segno.make(code, error="m", micro=False).matrix
    return {(r, c) for r, row in enumerate(matrix) for c, bit in enumerate(row) if bit}


def test_one_page_per_ticket_each_with_its_own_details():
    """Each page names the site, the event, venue, its ticket type, holder, the order and 'N of M', and
    carries its own code and no other ticket's."""
    holders, types = ["Ann Le Brun", "Ben Renouf", "Cat Vibert"], ["Standing", "Seated", "VIP"]
    tickets = [TicketInfo(code=c, ticket_type=t, holder_name=h) for c, t, h in zip(CODES, types, holders, strict=True)]
    texts = pages(render(tickets))
    assert len(texts) == 3
    for n, text in enumerate(texts):
        for part in ("Coderra Tickets", "Harbour Lights", "Fort Regent", "ORD-2026-0042", CODES[n],
                     types[n], holders[n], f"Ticket {n + 1} of 3"):
            assert part in text, (n, part)
        assert not any(code in text for code in CODES if code != CODES[n])


def test_times_are_the_events_local_time_in_summer_and_winter():
    """18:30 UTC prints as 19:30 BST in July and 18:30 GMT in December (Europe/Jersey)."""
    ticket = [TicketInfo(code=CODES[0], ticket_type="Standing", holder_name="Ann")]
    summer, = pages(render(ticket, event(SUMMER)))
    winter, = pages(render(ticket, event(WINTER)))
    assert "Saturday 11 July 2026, 19:30 BST" in summer and "18:30" not in summer
    assert "Saturday 12 December 2026, 18:30 GMT" in winter and "19:30" not in winter


def test_each_page_draws_the_qr_code_of_its_own_ticket_at_least_50_mm_wide():
    """The vector QR drawn on each page is module for module segno's symbol for that page's code."""
    tickets = [TicketInfo(code=c, ticket_type="Standing", holder_name="Ann") for c in CODES[:2]]
    pdf = render(tickets)
    for n, code in enumerate(CODES[:2]):
        size = segno.make(code, error="m", micro=False).symbol_size(border=0)[0]
        dark, module_mm = drawn_qr(pdf, n, size)
        assert dark == expected_qr(code)
        assert module_mm * size >= 50


def test_qr_symbol_is_a_sane_full_size_code_with_error_correction_m_or_better():
    """segno makes a regular (not micro) QR of a small version for a real ticket code."""
    qr = segno.make(CODES[0], error="m", micro=False)
    assert not qr.is_micro and qr.error in ("M", "Q", "H")
    assert 21 <= qr.symbol_size(border=0)[0] <= 41
    assert len(qr.matrix) == qr.symbol_size(border=0)[1]


def test_qr_is_vector_with_no_image_embedded():
    """The QR is drawn as rectangles, not embedded as a bitmap (or SVG-converted) image."""
    reader = pypdf.PdfReader(io.BytesIO(render([TicketInfo(code=CODES[0], ticket_type="X", holder_name="A")])))
    assert "/XObject" not in reader.pages[0]["/Resources"]


@pytest.mark.filterwarnings("error")
def test_unicode_and_hostile_names_render_without_noise(capfd, caplog):
    """Zoë, Łukasz, 李小龙 (no glyph in DejaVu), markup and control characters: no exception, no
    warning, nothing on stdout/stderr; Latin names appear, CJK becomes U+FFFD, controls vanish."""
    names = ["Zoë Ø'Brien", "Łukasz Żółć", "李小龙", '<b>&"', "Eve\r\nBcc: x\x00\u202e"]
    tickets = [TicketInfo(code=code, ticket_type="Standing", holder_name=name)
               for code, name in zip(CODES * 2, names, strict=False)]
    with caplog.at_level(logging.DEBUG, logger="fpdf"):
        texts = pages(render(tickets, event(title="Café Ø — Nuit")))
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert capfd.readouterr() == ("", "")
    assert "Zoë Ø'Brien" in texts[0] and "Łukasz Żółć" in texts[1] and '<b>&"' in texts[3]
    assert "\ufffd" * 3 in texts[2] and "李" not in texts[2]
    assert "Eve Bcc: x" in texts[4] and "\x00" not in texts[4] and "\u202e" not in texts[4]
    assert all("Café Ø — Nuit" in text for text in texts)


@pytest.mark.parametrize("count", [1, 12])
def test_one_and_twelve_tickets(count):
    """A single ticket and a dozen both give exactly one page per ticket, numbered N of M."""
    tickets = [TicketInfo(code=f"CODE{n:02d}-{CODES[0]}", ticket_type="Standing", holder_name="Ann")
               for n in range(count)]
    texts = pages(render(tickets))
    assert len(texts) == count
    assert f"Ticket {count} of {count}" in texts[-1] and f"CODE{count - 1:02d}-" in texts[-1]


def test_overlong_fields_stay_on_one_page_and_the_whole_code_is_printed():
    """Huge title/venue/holder are cut to fit; a long code wraps but is printed in full."""
    code = "X1y2Z3" * 25
    ticket = TicketInfo(code=code, ticket_type="Type " * 40, holder_name="Wolfeschlegelstein " * 10)
    texts = pages(render([ticket, ticket], event(title="W" * 300, venue="Venue " * 60)))
    assert len(texts) == 2
    assert code in "".join(texts[0].split())
    assert "…" in texts[0]


def test_output_is_deterministic_with_fixed_metadata():
    """Same input, same bytes (no clock or host leaks in); title 'Tickets – ORDER', fixed date."""
    ticket = [TicketInfo(code=CODES[0], ticket_type="Standing", holder_name="Ann")]
    first, second = render(ticket), render(ticket)
    assert first == second
    meta = pypdf.PdfReader(io.BytesIO(first)).metadata
    assert meta.title == "Tickets – ORD-2026-0042"
    assert meta.creation_date == ticket_pdf.CREATION_DATE


def test_no_tickets_is_refused():
    """An order without tickets is a caller bug, not an empty PDF."""
    with pytest.raises(ValueError):
        render([])


def test_naive_event_times_are_refused():
    """EventInfo insists on aware datetimes, so local time can never be guessed from the server."""
    with pytest.raises(ValueError):
        event(datetime(2026, 7, 11, 18, 30))


def ics(ev: EventInfo, **kwargs) -> Calendar:
    raw = event_ics(event=ev, order_number="ORD-2026-0042", site_name="Coderra Tickets",
                    domain="tickets.example.je", **kwargs)
    return Calendar.from_ical(raw)


def test_ics_round_trips_one_event_in_utc():
    """One VEVENT with the stable UID, summary, location, UTC start/end, order in the description."""
    ends = SUMMER + timedelta(hours=2, minutes=15)
    stamp = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
    cal = ics(event(ends_at=ends), stamp=stamp)
    assert (str(cal["PRODID"]), str(cal["VERSION"]), str(cal["METHOD"])) == \
        ("-//payverify//Coderra Tickets//EN", "2.0", "PUBLISH")
    events = cal.walk("VEVENT")
    assert len(events) == 1
    vevent = events[0]
    assert str(vevent["UID"]) == "event-42@tickets.example.je"
    assert (str(vevent["SUMMARY"]), str(vevent["LOCATION"])) == ("Harbour Lights", "Fort Regent")
    assert "ORD-2026-0042" in str(vevent["DESCRIPTION"])
    for name, expected in (("DTSTART", SUMMER), ("DTEND", ends), ("DTSTAMP", stamp)):
        value = vevent[name].dt
        assert value == expected and value.utcoffset() == timedelta(0), name
        assert vevent[name].to_ical().endswith(b"Z"), name


def test_ics_escapes_commas_semicolons_and_newlines():
    """A title and venue with , ; \\ and a newline are escaped on the wire and come back unchanged."""
    title, venue = "Rock, Roll; and\nmore \\ stuff", "Fort Regent; St Helier, Jersey"
    raw = event_ics(event=event(title=title, venue=venue), order_number="O-1", site_name="S", domain="d.je")
    assert b"SUMMARY:Rock\\, Roll\\; and\\nmore \\\\ stuff" in raw.replace(b"\r\n ", b"")
    vevent = Calendar.from_ical(raw).walk("VEVENT")[0]
    assert (str(vevent["SUMMARY"]), str(vevent["LOCATION"])) == (title, venue)


def test_ics_end_defaults_to_three_hours_after_the_start():
    """No recorded end: DTEND is the start plus 3 hours (in UTC)."""
    vevent = ics(event(WINTER)).walk("VEVENT")[0]
    assert vevent["DTSTART"].dt == WINTER
    assert vevent["DTEND"].dt == WINTER + timedelta(hours=3)


def test_latin1_tickets_use_the_builtin_font_and_long_lines_still_fit():
    """An all-Latin-1 order is drawn in the PDF's built-in Helvetica (no font embedded), and a name too
    wide for its line is cut with '...' instead of a character Helvetica lacks."""
    event = EventInfo(id=9, title="Harbour Lights", venue="Fort Regent",
                      starts_at=datetime(2026, 12, 12, 19, 30, tzinfo=UTC))
    holder = "Eve Bcc: victim@example.org <script>alert(1)</script> Bartholomew-Featherstonehaugh"
    pdf = ticket_pdf.tickets_pdf(event=event, order_number="JE-LAT1",
                                 tickets=[TicketInfo(code="c0de" * 8, ticket_type="Standing", holder_name=holder)],
                                 site_name="Jersey Live", timezone="Europe/Jersey")
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    fonts = {str(f.get_object()["/BaseFont"]) for f in reader.pages[0]["/Resources"]["/Font"].values()}
    assert fonts and all("DejaVu" not in f for f in fonts)
    text = reader.pages[0].extract_text()
    assert "Eve Bcc: victim@example.org" in text and "..." in text
    unicode_pdf = ticket_pdf.tickets_pdf(event=event, order_number="JE-UNI1",
                                         tickets=[TicketInfo(code="c0de" * 8, ticket_type="Standing",
                                                             holder_name="Łukasz")],
                                         site_name="Jersey Live", timezone="Europe/Jersey")
    page = pypdf.PdfReader(io.BytesIO(unicode_pdf)).pages[0]
    assert any("DejaVu" in str(f.get_object()["/BaseFont"]) for f in page["/Resources"]["/Font"].values())
    assert "Łukasz" in page.extract_text()

"""The tickets PDF: one A5 page per ticket with the event, the holder and the door code as text and QR.

fpdf2 draws the pages with the PDF's built-in Helvetica when every text is Latin-1 (fast: nothing to
embed), else with the bundled DejaVu Sans (wide Latin/Greek/Cyrillic coverage); segno makes the QR
code, drawn from its module matrix as vector rectangles so it stays crisp at any zoom. Characters the
font cannot draw (e.g. CJK) are replaced by U+FFFD before fpdf2 sees them, so it never logs a
missing-glyph warning.
The output is deterministic: a fixed creation date, nothing from the server's clock or host.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import segno
from fontTools.ttLib import TTFont
from fpdf import FPDF
from fpdf.enums import Align, MethodReturnValue, RenderStyle, WrapMode

from payverify.mail.documents import EventInfo, TicketInfo

__all__ = ["EventInfo", "TicketInfo", "format_local_time", "tickets_pdf"]

FONTS = Path(__file__).parent / "fonts"
FONT = "DejaVu"
CORE_FONT = "Helvetica"
# The PDF's /CreationDate: fixed, so identical tickets give identical bytes and no server clock leaks.
CREATION_DATE = datetime(2000, 1, 1, tzinfo=UTC)
A5 = (148, 210)  # mm; a tuple, since fpdf2 warns about the "A5" name (its size was fixed in 2.8.5)
QR_WIDTH_MM = 66.0  # the code, 4-module quiet zone included: the symbol itself is about 50 mm wide
QR_BORDER = 4  # modules of quiet zone on each side, as ISO/IEC 18004 asks
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
# A text this much narrower than its cell's inner width is one line, whatever fpdf2's float tolerance.
FITS_SLACK_MM = 0.01
_MISSING = "\ufffd"
_DROP = {"Cc", "Cf", "Cs", "Co", "Cn"}  # controls, format (bidi overrides, ZWJ...), surrogates, unassigned


def format_local_time(moment: datetime, timezone: str) -> str:
    """'Saturday 12 December 2026, 19:30 GMT': locale-independent, in the event's local time."""
    local = moment.astimezone(ZoneInfo(timezone))
    return (f"{_WEEKDAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]} {local.year}, "
            f"{local:%H:%M} {local.tzname()}")


@lru_cache(maxsize=1)
def _drawable() -> frozenset[int]:
    """Code points both bundled fonts (regular and bold) have a glyph for."""
    maps = []
    for name in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"):
        with TTFont(FONTS / name) as font:
            maps.append(frozenset(font.getBestCmap()))
    return maps[0] & maps[1]


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _clean(text: str, limit: int) -> str:
    """One line of printable text the font can draw: whitespace collapsed, controls dropped, capped."""
    drawable = _drawable()
    text = " ".join(str(text).split())
    text = "".join(ch if ord(ch) in drawable else _MISSING
                   for ch in text if unicodedata.category(ch) not in _DROP)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _dark_runs(row: bytes | bytearray) -> list[tuple[int, int]]:
    """(first column, length) of each run of dark modules in one row of the QR matrix."""
    runs, start = [], None
    for col, dark in enumerate(row):
        if dark and start is None:
            start = col
        elif not dark and start is not None:
            runs.append((start, col - start))
            start = None
    if start is not None:
        runs.append((start, len(row) - start))
    return runs


def _dark_boxes(matrix: list[bytes] | tuple[bytearray, ...]) -> list[tuple[int, int, int, int]]:
    """(row, column, width, height) in modules of rectangles covering exactly the dark modules: each
    run of dark modules in a row, merged with the identical runs in the rows right below it."""
    runs = [_dark_runs(row) for row in matrix]
    found = [set(row) for row in runs]
    boxes = []
    for top, row in enumerate(runs):
        for run in row:
            if top and run in found[top - 1]:
                continue  # drawn as part of the box that starts above
            bottom = top + 1
            while bottom < len(runs) and run in found[bottom]:
                bottom += 1
            boxes.append((top, run[0], run[1], bottom - top))
    return boxes


def _qr(pdf: FPDF, code: str, x: float, y: float) -> None:
    """The code as a QR symbol (error correction M or better), drawn as vector rectangles straight from
    segno's module matrix. Nothing to serialise and parse back (as SVG), nothing to embed (as an
    image), and as crisp at any zoom."""
    matrix = segno.make(code, error="m", micro=False).matrix
    module = QR_WIDTH_MM / (len(matrix) + 2 * QR_BORDER)  # the quiet zone is the light page around it
    left, top = x + QR_BORDER * module, y + QR_BORDER * module
    pdf.set_fill_color(0)
    for row, col, width, height in _dark_boxes(matrix):
        pdf.rect(left + col * module, top + row * module, width * module, height * module, style=RenderStyle.F)


def _lines(pdf: FPDF, text: str, width: float, max_lines: int, wrap: WrapMode = WrapMode.WORD) -> list[str]:
    """text wrapped to width in the current font, at most max_lines (the last one ellipsised if cut)."""
    if pdf.get_string_width(text) < width - 2 * pdf.c_margin - FITS_SLACK_MM:
        return [text]  # nearly every text fits its line: measuring is far cheaper than a dry-run layout
    lines = pdf.multi_cell(width, 5, text, dry_run=True, output=MethodReturnValue.LINES, wrapmode=wrap)
    # fpdf2 types the result as the union of every `output` mode; LINES alone is a list of str.
    if not isinstance(lines, list):
        raise TypeError(f"fpdf2 multi_cell(output=LINES) returned {type(lines).__name__}, not a list of lines")
    if len(lines) <= max_lines:
        return lines
    last = lines[max_lines - 1]
    # Helvetica (Latin-1) has no "…": three dots there.
    ellipsis = "..." if pdf.font_family == CORE_FONT.lower() else "…"
    while last and pdf.get_string_width(last + ellipsis) > width:
        last = last[:-1]
    return [*lines[: max_lines - 1], last.rstrip() + ellipsis]


def _cell(pdf: FPDF, w: float, h: float, text: str, *, align: Align = Align.L, newline: bool = True) -> None:
    """What pdf.cell(w, h, text, align=align) draws, at a tenth of the cost: one text object on the
    baseline and with the cell margin fpdf2 uses, without its styled-line machinery (which only
    matters for markdown, links, borders or justified text, none of them used here). Then to the next
    line (newline, as new_x=LMARGIN, new_y=NEXT) or right of the cell (cell's default)."""
    if w == 0:
        w = pdf.w - pdf.r_margin - pdf.x
    if text:
        if align == Align.L:
            dx = pdf.c_margin
        else:
            width = pdf.get_string_width(text)
            dx = (w - width) / 2 if align == Align.C else w - pdf.c_margin - width
        pdf.text(pdf.x + dx, pdf.y + 0.5 * h + 0.3 * pdf.font_size, text)
    if newline:
        pdf.set_xy(pdf.l_margin, pdf.y + h)
    else:
        pdf.set_x(pdf.x + w)


def _text(pdf: FPDF, text: str, height: float, max_lines: int, *, x: float | None = None,
          align: Align = Align.L, wrap: WrapMode = WrapMode.WORD) -> None:
    """Bounded text from x (default: the left margin) to the right margin, then down to a new line."""
    x = pdf.l_margin if x is None else x
    width = pdf.w - pdf.r_margin - x
    for line in _lines(pdf, text, width, max_lines, wrap):
        pdf.set_x(x)
        _cell(pdf, width, height, line, align=align)


def _row(pdf: FPDF, font: str, label: str, value: str) -> None:
    pdf.set_font(font, "", 9)
    pdf.set_text_color(110)
    _cell(pdf, 32, 6.5, label, newline=False)
    pdf.set_font(font, "B", 11)
    pdf.set_text_color(0)
    _text(pdf, value, 6.5, 1, x=pdf.l_margin + 32)


FOOTER = "Show this page at the door, printed or on screen. Each code admits one person once; keep it private."
_footer_lines: dict[str, list[str]] = {}  # per font: the same on every page, so wrapped once per process


def _page(pdf: FPDF, font: str, *, site: str, title: str, when: str, venue: str, order: str,
          ticket: TicketInfo, number: int, count: int) -> None:
    pdf.add_page()
    pdf.set_font(font, "B", 10)
    pdf.set_text_color(90)
    counter = f"Ticket {number} of {count}"
    _cell(pdf, 0, 7, counter, align=Align.R, newline=False)
    pdf.set_x(pdf.l_margin)
    _cell(pdf, 0, 7, _lines(pdf, site, pdf.epw - pdf.get_string_width(counter) - 6, 1)[0])
    pdf.set_draw_color(180)
    pdf.line(pdf.l_margin, pdf.get_y() + 1, pdf.w - pdf.r_margin, pdf.get_y() + 1)
    pdf.set_y(pdf.get_y() + 5)
    pdf.set_text_color(0)
    pdf.set_font(font, "B", 18)
    _text(pdf, title, 8, 2)
    pdf.set_y(pdf.get_y() + 2)
    pdf.set_font(font, "", 11)
    _text(pdf, when, 6, 1)
    _text(pdf, venue, 6, 2)

    top = max(pdf.get_y() + 6, 58.0)
    _qr(pdf, ticket.code, pdf.l_margin + (pdf.epw - QR_WIDTH_MM) / 2, top)
    pdf.set_y(top + QR_WIDTH_MM + 1)
    code = _clean(ticket.code, 180)
    size = 12 if len(code) <= 40 else 9
    pdf.set_font("Courier" if code.isascii() else font, "B", size)  # monospace for the usual ASCII codes
    _text(pdf, code, 5, 3, align=Align.C, wrap=WrapMode.CHAR)
    pdf.set_y(pdf.get_y() + 3)
    _row(pdf, font, "Ticket type", _clean(ticket.ticket_type, 80))
    _row(pdf, font, "Holder", _clean(ticket.holder_name, 120))
    _row(pdf, font, "Order", order)

    pdf.set_y(-20)
    pdf.set_font(font, "", 8)
    pdf.set_text_color(110)
    if font not in _footer_lines:
        _footer_lines[font] = _lines(pdf, FOOTER, pdf.epw, 3)
    for line in _footer_lines[font]:
        _cell(pdf, 0, 4, line, align=Align.C)


def tickets_pdf(*, event: EventInfo, order_number: str, tickets: list[TicketInfo], site_name: str,
                timezone: str) -> bytes:
    """The tickets of one order as a PDF: one A5 page per ticket, in the order given."""
    if not tickets:
        raise ValueError("tickets_pdf needs at least one ticket")
    order = _clean(order_number, 64)
    pdf = FPDF(orientation="portrait", unit="mm", format=A5)
    pdf.set_margins(12, 12, 12)
    pdf.set_auto_page_break(False)  # one page per ticket, whatever the text lengths
    shared = {"site": _clean(site_name, 120), "title": _clean(event.title, 200), "venue": _clean(event.venue, 200),
              "when": format_local_time(event.starts_at, timezone), "order": order}
    texts = [*shared.values(), *(_clean(t.ticket_type, 80) for t in tickets),  # as drawn, "…" included
             *(_clean(t.holder_name, 120) for t in tickets), *(_clean(t.code, 180) for t in tickets)]
    if all(_latin1(text) for text in texts):
        # Nearly every order: the PDF's built-in Helvetica draws it, with no font to parse and embed
        # (about ten times faster, which matters when an on-sale burst sends thousands of tickets).
        font = CORE_FONT
    else:
        font = FONT
        pdf.add_font(FONT, "", FONTS / "DejaVuSans.ttf")
        pdf.add_font(FONT, "B", FONTS / "DejaVuSans-Bold.ttf")
    pdf.set_creation_date(CREATION_DATE)
    pdf.set_title(f"Tickets – {order}")
    pdf.set_author(_clean(site_name, 80))
    pdf.set_creator("payverify")
    pdf.set_lang("en")
    for number, ticket in enumerate(tickets, start=1):
        _page(pdf, font, **shared, ticket=ticket, number=number, count=len(tickets))
    return bytes(pdf.output())

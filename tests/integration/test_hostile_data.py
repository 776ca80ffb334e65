"""Hostile data: SQL metacharacters in every text field, absurd amounts and quantities."""

from __future__ import annotations

import html as htmllib
import time
from decimal import Decimal
from io import BytesIO

import pytest
from pypdf import PdfReader

from tests.helpers import rows, scalar, status_of, tickets_of

SQLISH = "'; DROP TABLE orders_order; --"
BACKSLASH = "back\\slash \\' \\\\"
FORMATS = "%s %(x)s %% {0} $1"


def parts(message):
    """(text, html, attachments by content type)."""
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    attachments = {a.get_content_type(): a for a in message.iter_attachments()}
    return text, html, attachments


def test_sql_metacharacters_in_every_text_field(seed, db, smtp, run_payverify):
    """Quotes, comments, backslashes and driver placeholders in names, the e-mail's local part, the
    event's title and venue, the ticket type and the order number: the paid order is settled normally,
    no table is dropped, and the mail carries every text intact (escaped in HTML)."""
    artist = seed.artist(name=f"Artist {SQLISH}")
    title = f"Show {SQLISH} <b>&"
    venue = f"Venue {BACKSLASH}"
    ticket_name = f"Tier {FORMATS}"
    event = seed.event(artist, title, venue=venue)
    tt = seed.ticket_type(event, ticket_name, "10.00")
    first, last = f"Ann {SQLISH}", f"O'Neil {FORMATS} {BACKSLASH}"
    email = "o'neil--%s{x}@example.com"
    number = "JE-';--%s%(x)s\\"
    order = seed.order([(tt, 2)], event_id=event, email=email, first_name=first, last_name=last,
                       order_number=number)
    result = run_payverify("sweep")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert scalar(db, "SELECT to_regclass('orders_order') IS NOT NULL AND to_regclass('tickets_ticket') IS NOT NULL "
                      "AND to_regclass('payverify_audit') IS NOT NULL")
    assert status_of(db, order.id) == "completed"
    assert tickets_of(db, order.id) == 2
    assert scalar(db, "SELECT count(*) FROM orders_order") == 1
    assert scalar(db, "SELECT order_number FROM orders_order WHERE id = %(id)s", id=order.id) == number
    assert scalar(db, "SELECT string_agg(DISTINCT holder_name, ',') FROM tickets_ticket") == f"{first} {last}"
    assert scalar(db, "SELECT order_number FROM payverify_audit WHERE order_id = %(id)s", id=order.id) == number

    mails = [m for m in smtp.messages if email in m.rcpt_tos]
    assert len(mails) == 1
    message = mails[0].parsed()
    assert [a.addr_spec for a in message["To"].addresses] == [email]
    assert number in str(message["Subject"])
    text, html, attachments = parts(message)
    for value in (title, number, first):
        assert value in text, value
        assert value in htmllib.unescape(html), value
    assert "<b>&" not in html and "&lt;b&gt;&amp;" in html
    pdf_text = "".join(p.extract_text() for p in PdfReader(BytesIO(attachments["application/pdf"].get_content())).pages)
    assert "DROP TABLE" in pdf_text


def test_long_name_cannot_add_addresses_to_the_to_header(seed, db, smtp, run_payverify):
    """A long customer name with commas and an address in it stays one recipient in the To header
    (Python's folding drops the quotes of a long display name; payverify then omits the name)."""
    artist = seed.artist()
    event = seed.event(artist)
    name = "Padding padding padding padding padding padding padding, evil@evil.example, x"
    seed.order([(seed.ticket_type(event), 1)], event_id=event, email="fan@example.com",
               first_name=name, last_name="Morgan")
    assert run_payverify("sweep").returncode == 0
    (mail,) = smtp.messages
    assert mail.rcpt_tos == ("fan@example.com",)
    assert [a.addr_spec for a in mail.parsed()["To"].addresses] == ["fan@example.com"]
    assert b"evil@evil.example" not in mail.data.split(b"\r\n\r\n", 1)[0]


@pytest.mark.parametrize("amount", ["1E+11", "-25.00", "0", "25.000000001", "0.00", "2500", "25.01", "24.99"])
def test_absurd_amounts_never_complete(amount, seed, db, run_payverify):
    """SumUp saying PAID with an amount that is not exactly the order's 25.00 (huge, negative, zero, a
    hair off): the order is never completed and gets no tickets."""
    artist = seed.artist()
    event = seed.event(artist)
    order = seed.order([(seed.ticket_type(event, price="12.50"), 2)], event_id=event, sumup_amount=amount)
    assert order.total == Decimal("25.00")
    result = run_payverify("sweep")
    assert result.returncode == 0, result.stderr
    assert status_of(db, order.id) in ("requires_manual_review", "pending_verification")
    assert tickets_of(db, order.id) == 0
    assert scalar(db, "SELECT count(*) FROM payverify_fulfilment") == 0
    assert scalar(db, "SELECT count(*) FROM payverify_outbox WHERE kind = 'order_confirmation'") == 0


LARGE_QUANTITY = 500  # MAX_ADMISSIONS: the most one order may issue (payverify/orders/tickets.py)


def test_most_admissions_an_order_may_have_issue_exactly_that_many_tickets(seed, db, smtp, run_payverify):
    """Five items of 100 (the most one item may hold), 500 admissions (the most one order may have):
    exactly 500 tickets with distinct codes, and a PDF of 500 pages. (Beyond either bound the order
    goes to review: tests/integration/test_order_items.py.)"""
    artist = seed.artist()
    event = seed.event(artist)
    order = seed.order([(seed.ticket_type(event, price="1.00"), LARGE_QUANTITY // 5)] * 5, event_id=event)
    started = time.monotonic()
    result = run_payverify("sweep", timeout=180)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert status_of(db, order.id) == "completed"
    assert tickets_of(db, order.id) == LARGE_QUANTITY
    assert scalar(db, "SELECT count(DISTINCT code) FROM tickets_ticket") == LARGE_QUANTITY
    assert scalar(db, "SELECT tickets_issued FROM payverify_fulfilment WHERE order_id = %(id)s",
                  id=order.id) == LARGE_QUANTITY
    (mail,) = smtp.messages
    _, _, attachments = parts(mail.parsed())
    pdf = PdfReader(BytesIO(attachments["application/pdf"].get_content()))
    assert len(pdf.pages) == LARGE_QUANTITY
    assert elapsed < 120, elapsed


def test_free_order_paid_zero(seed, db, smtp, run_payverify):
    """An order totalling 0.00 that SumUp reports PAID for 0.00 with a successful transaction: every
    field matches, so it is completed like any other (documented behaviour: payverify does not refuse
    free orders; the site decides whether to create SumUp checkouts for them)."""
    artist = seed.artist()
    event = seed.event(artist)
    order = seed.order([(seed.ticket_type(event, "Guest list", "0.00"), 2)], event_id=event)
    assert order.total == Decimal("0.00")
    result = run_payverify("sweep")
    assert result.returncode == 0, result.stderr
    assert status_of(db, order.id) == "completed"
    assert tickets_of(db, order.id) == 2
    assert [r["outcome"] for r in rows(db, "SELECT outcome FROM payverify_audit WHERE order_id = %(id)s",
                                       id=order.id)] == ["completed"]
    assert len(smtp.messages) == 1


@pytest.mark.parametrize("checkout_id", ["../x", "..", "a b\n"])
def test_implausible_checkout_id_goes_to_review_and_is_never_requested(seed, db, sumup, smtp, run_payverify,
                                                                       checkout_id):
    """An order whose checkout id cannot be a SumUp id is not asked about: the sweep exits 0 without
    a traceback, the order needs manual review with one alert, and SumUp never sees the id."""
    artist = seed.artist()
    event = seed.event(artist)
    order = seed.order([(seed.ticket_type(event), 1)], event_id=event, checkout_id=checkout_id, sumup_status=None)
    result = run_payverify("sweep")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert status_of(db, order.id) == "requires_manual_review"
    assert tickets_of(db, order.id) == 0
    alerts = [m for m in smtp.messages if "needs manual review" in str(m.parsed()["Subject"])]
    assert len(alerts) == 1
    assert order.order_number in str(alerts[0].parsed()["Subject"])
    assert [r.path for r in sumup.requests if r.path.startswith("/v0.1/checkouts")] == []

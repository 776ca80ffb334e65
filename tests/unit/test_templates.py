"""Mail templates: every kind renders (subject, text, HTML) from a context built the way outbox.py builds it."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from jinja2 import UndefinedError

from payverify.config import Settings
from payverify.errors import ConfigError
from payverify.mail import outbox
from payverify.mail.kinds import MAIL_TYPES
from payverify.mail.render import Renderer, clean_subject, templates_dir
from payverify.mail.rows import OutgoingRow
from payverify.mail.sender import mail_failed_alert
from payverify.models import Order
from payverify.orders import decision as d
from payverify.orders import notices
from payverify.orders.tickets import new_code
from payverify.sumup.answer import Answer, AnswerKind
from payverify.sumup.checkout import checkout_from_dict
from tests.factories import CHECKOUT_ID, make_item, make_order

SITE = "https://tickets.example.je"
SETTINGS = Settings(site_url=SITE, site_name="Jersey Live")
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # the decisions' clock: before both sample events
WINTER_START = datetime(2026, 12, 12, 18, 30, tzinfo=UTC)  # GMT: 18:30 local
SUMMER_START = datetime(2026, 7, 18, 18, 30, tzinfo=UTC)  # BST: 19:30 local
HOSTILE = '<script>alert(1)</script> & "Bob"'
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")

ORDER = make_order(
    id=1042, email="ann@example.com", first_name="Ann", last_name="Le Brocq", total=Decimal("57.50"),
    created_at=NOW - timedelta(hours=1), event_id=7, event_venue="Fort Regent, St Helier",
    event_starts_at=WINTER_START, event_ends_at=WINTER_START + timedelta(hours=3), artist_id=3, artist_uses_oauth=True)
ITEMS = [make_item(quantity=2, unit_price=Decimal("22.50")),
         make_item(id=2, ticket_type_id=12, ticket_type_name="Balcony", unit_price=Decimal("12.50"))]
TICKETS = [{"code": new_code(), "ticket_type": t, "holder_name": "Ann Le Brocq"}
           for t in ("Standing", "Standing", "Balcony")]


def paid(amount: str = "57.50") -> Answer:
    """SumUp's answer for a PAID checkout of `amount` GBP to the artist's merchant."""
    body = {"id": CHECKOUT_ID, "checkout_reference": ORDER.order_number, "amount": Decimal(amount),
            "currency": "GBP", "merchant_code": "MH4H92C7", "status": "PAID", "transaction_code": "TEENSK4W2K",
            "transactions": [{"id": "t1", "transaction_code": "TEENSK4W2K", "amount": Decimal(amount),
                              "currency": "GBP", "status": "SUCCESSFUL", "merchant_code": "MH4H92C7"}]}
    return Answer(kind=AnswerKind.CHECKOUT, http_status=200, checkout=checkout_from_dict(body))


def queued(kind: str, answer: Answer, order: Order = ORDER) -> dict:
    """The context of the outbox row `kind` as the sender reads it back: decided by the real decision
    table, built by notices.messages_for, and round-tripped through JSON like the jsonb column."""
    decision = d.decide(order, ITEMS, answer, NOW, SETTINGS.policy)
    messages = {m.kind: m for m in notices.messages_for(decision, order, ITEMS, answer.checkout, SETTINGS)}
    return roundtrip(messages[kind].context)


def roundtrip(context: dict) -> dict:
    """What the sender reads back from the jsonb column: Decimals and datetimes become strings."""
    return json.loads(json.dumps(context, default=outbox._json_default))


def stuck_context() -> dict:
    """The stuck-orders digest as payverify/digest.py queues it (that needs a database; the shape is copied)."""
    return roundtrip({"stuck_minutes": 30.0, "truncated": False, "orders": [
        {"order_id": 1042, "order_number": "JE-7F3K2Q", "stuck_minutes": 47, "created_at": NOW,
         "last_checked_at": datetime(2026, 12, 1, 18, 2, tzinfo=UTC), "checks": 4,
         "last_http_status": 503, "last_sumup_status": None, "last_outcome": "unchanged",
         "last_reason": "SumUp unavailable: HTTP 503 after 3 attempts"},
        {"order_id": 1057, "order_number": "JE-Q9W4ZL", "stuck_minutes": 35, "created_at": NOW,
         "last_checked_at": None, "checks": 0, "last_http_status": None, "last_sumup_status": None,
         "last_outcome": None, "last_reason": None}]})


def mail_failed_context() -> dict:
    """The undeliverable-mail alert as the sender queues it for a confirmation refused with a 550."""
    row = OutgoingRow(id=88, kind="order_confirmation", recipients=("ann@example.com",), attempts=13,
                      order_id=1042, created_at=datetime(2026, 12, 1, 18, 0, tzinfo=UTC),
                      context={"order_number": "JE-7F3K2Q"}, message_id="<order-confirmation.88@example.com>",
                      too_old=False)
    reason = "550 5.1.1 <ann@example.com>: Recipient address rejected"
    return roundtrip(mail_failed_alert(row, reason, SETTINGS).context)


def order_error_context(order_number: str | None = "JE-7F3K2Q") -> dict:
    """The alert for an order that errored three runs in a row, as settle.record_error queues it."""
    return roundtrip(outbox.order_error_alert(
        1042, order_number, "database error: canceling statement due to lock timeout",
        datetime(2026, 12, 1, 18, 5, tzinfo=UTC), 3, SETTINGS).context)


def reconcile_context() -> dict:
    """A reconciliation digest as modes/reconcile.py queues it: two new discrepancies, one account unread."""
    found = [
        {"key": "refunded_after_completion:MH4H92C7:TEENSK4W2K:25.00", "kind": "refunded_after_completion",
         "order_number": "JE-7F3K2Q", "order_status": "completed", "transaction_code": "TEENSK4W2K",
         "amount": Decimal("25.00"), "currency": "GBP", "merchant_code": "MH4H92C7", "sumup_status": "REFUNDED",
         "detail": "Order JE-7F3K2Q is completed with its tickets valid, but the payment of 25.00 GBP was "
                   "refunded at SumUp."},
        {"key": "paid_without_completed_order:MH4H92C7:TQ3LX9PD2K", "kind": "paid_without_completed_order",
         "order_number": "JE-Q9W4ZL", "order_status": "expired", "transaction_code": "TQ3LX9PD2K",
         "amount": Decimal("57.50"), "currency": "GBP", "merchant_code": "MH4H92C7", "sumup_status": "SUCCESSFUL",
         "detail": "SumUp took 57.50 GBP, the payment of order JE-Q9W4ZL's checkout, but that order is expired: "
                   "no tickets were issued for it."}]
    accounts = [{"merchant_code": "MH4H92C7", "label": "Lua Verde", "ok": True, "error": None},
                {"merchant_code": "MK8Q2W1E", "label": "Tide Pool", "ok": False,
                 "error": "SumUp answered HTTP 503"}]
    return roundtrip(outbox.reconcile_alert("run-1", found, accounts, SETTINGS).context)


def samples() -> dict[str, tuple[dict, list | None]]:
    """One realistic (context, tickets) per kind."""
    failed = Answer(kind=AnswerKind.CHECKOUT, http_status=200, checkout=checkout_from_dict(
        {"id": CHECKOUT_ID, "checkout_reference": ORDER.order_number, "amount": Decimal("57.50"),
         "currency": "GBP", "merchant_code": "MH4H92C7", "status": "FAILED", "transactions": []}))
    return {
        "order_confirmation": (queued(d.CONFIRMATION, paid()), TICKETS),
        "payment_failed": (queued(d.PAYMENT_FAILED, failed), None),
        "admin_alert_amount_mismatch": (queued(d.ALERT_REVIEW, paid("20.00")), None),
        "admin_alert_late_payment": (queued(d.ALERT_LATE_PAYMENT, paid(), replace(ORDER, status="failed")), None),
        "admin_alert_reconnect_sumup": (roundtrip(outbox.reconnect_alert(
            3, "Lua Verde", "SumUp refused the refresh token (invalid_grant)", SETTINGS).context), None),
        "admin_alert_stuck_orders": (stuck_context(), None),
        "admin_alert_mail_failed": (mail_failed_context(), None),
        "admin_alert_order_error": (order_error_context(), None),
        "admin_alert_reconcile": (reconcile_context(), None),
    }


# The figures each kind must show in BOTH parts (beyond the subject).
KEY_FIGURES = {
    "order_confirmation": ["JE-7F3K2Q", "Harbour Lights", "Fort Regent, St Helier", "22.50 GBP", "45.00 GBP",
                           "12.50 GBP", "57.50 GBP", "Standing", "Balcony", "PDF", ".ics"],
    "payment_failed": ["JE-7F3K2Q", "57.50 GBP", "Harbour Lights", "no tickets were issued", SITE],
    "admin_alert_amount_mismatch": ["JE-7F3K2Q", "57.50", "20.00", "MH4H92C7", CHECKOUT_ID, "TEENSK4W2K",
                                    "amount is 20.00 GBP", "requires_manual_review"],
    "admin_alert_late_payment": ["JE-7F3K2Q", "failed", "57.50 GBP", CHECKOUT_ID, "TEENSK4W2K", "oversold", "refund"],
    "admin_alert_reconnect_sumup": ["Lua Verde", "invalid_grant", "reconnect their SumUp account"],
    "admin_alert_stuck_orders": ["JE-7F3K2Q", "47 min", "HTTP 503", ", 4 check(s)", "JE-Q9W4ZL", "35 min", "never",
                                 "30 minutes", f"{SITE}/admin/orders/order/1057/change/"],
    "admin_alert_mail_failed": ["order_confirmation", "ann@example.com", "13", "Recipient address rejected",
                                "payverify resend JE-7F3K2Q", f"{SITE}/admin/orders/order/1042/change/"],
    "admin_alert_reconcile": ["refunded_after_completion", "JE-7F3K2Q", "TEENSK4W2K", "25.00 GBP", "REFUNDED",
                              "order's tickets in the admin", "paid_without_completed_order", "JE-Q9W4ZL (expired)",
                              "payverify check JE-Q9W4ZL", "Tide Pool", "SumUp answered HTTP 503"],
    "admin_alert_order_error": ["JE-7F3K2Q", "1042", "database error: canceling statement due to lock timeout",
                                "3 runs in a row", "Tuesday 1 December 2026, 18:05 (GMT)", "payverify check JE-7F3K2Q",
                                "order.error", f"{SITE}/admin/orders/order/1042/change/"],
}
ORDER_KINDS = sorted(MAIL_TYPES - {"admin_alert_reconnect_sumup", "admin_alert_reconcile"})


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(SETTINGS)


def test_samples_cover_every_kind():
    """A new kind without a sample (and so without a rendering test) fails here."""
    assert set(samples()) == set(MAIL_TYPES) == set(KEY_FIGURES)


@pytest.mark.parametrize("kind", sorted(MAIL_TYPES))
def test_every_kind_renders_with_its_figures(renderer, kind):
    """Both parts of every kind render from a realistic context and carry the figures staff/customers need."""
    context, tickets = samples()[kind]
    mail = renderer.render(kind, context, tickets=tickets)
    for figure in KEY_FIGURES[kind]:
        assert figure in mail.text, f"{figure!r} missing from the text part"
        assert figure in mail.html, f"{figure!r} missing from the HTML part"
    assert mail.subject and not CONTROL.search(mail.subject) and len(mail.subject) <= 200
    assert mail.subject.startswith("[payverify] ") == kind.startswith("admin_alert_")
    assert "Jersey Live" in mail.text and "Jersey Live" in mail.html  # branded


@pytest.mark.parametrize("kind", ORDER_KINDS)
def test_subject_names_the_order(renderer, kind):
    """Every mail about an order names its order number in the subject."""
    context, tickets = samples()[kind]
    assert "JE-7F3K2Q" in renderer.render(kind, context, tickets=tickets).subject


@pytest.mark.parametrize("kind", sorted(MAIL_TYPES))
def test_html_is_self_contained_with_inlined_css(renderer, kind):
    """CSS went into style="" attributes; no <style>, <link>, <script> or remote resource is left;
    the only URLs are links to the site itself."""
    context, tickets = samples()[kind]
    html = renderer.render(kind, context, tickets=tickets).html
    assert re.search(r'<td[^>]* style="[^"]*padding', html), "style.css was not inlined"
    for forbidden in ("<style", "<link", "<script", "<img", "src=", "url(", "@import"):
        assert forbidden not in html.lower(), forbidden
    for url in re.findall(r'href="([^"]*)"', html):
        assert url.startswith(SITE + "/") or url == SITE, url


def test_confirmation_lists_every_ticket_code(renderer):
    """The customer can get in without opening attachments: every code is in both parts."""
    context, _ = samples()["order_confirmation"]
    mail = renderer.render("order_confirmation", context, tickets=TICKETS)
    for ticket in TICKETS:
        assert ticket["code"] in mail.text and ticket["code"] in mail.html
    assert mail.subject == "Your tickets for Harbour Lights – order JE-7F3K2Q"


def test_review_alert_without_a_checkout_still_renders(renderer):
    """A 404 review (SumUp knows no such checkout: `received` is None) still shows what was expected."""
    context = queued(d.ALERT_REVIEW, Answer(kind=AnswerKind.NOT_FOUND, http_status=404, reason="404"))
    mail = renderer.render("admin_alert_amount_mismatch", context)
    for part in (mail.text, mail.html):
        assert "SumUp returned no checkout" in part and CHECKOUT_ID in part and "HTTP 404" in part


def test_review_alert_for_items_that_do_not_add_up_names_both_sums(renderer):
    """Items of 5 x 10.00 on an order of 10.00 paid 10.00: the alert lists the items, what they add up
    to (unrounded) and the total that was paid, in both parts."""
    order = replace(ORDER, total=Decimal("10.00"))
    items = [make_item(quantity=5, unit_price=Decimal("10.00"))]
    decision = d.decide(order, items, paid("10.00"), NOW, SETTINGS.policy)
    (message,) = notices.messages_for(decision, order, items, paid("10.00").checkout, SETTINGS)
    mail = renderer.render(d.ALERT_REVIEW, roundtrip(message.context))
    assert "5 x Standing at 10.00 GBP = 50.00 GBP" in mail.text
    assert "The items add up to 50.00 GBP; the order's total is 10.00 GBP." in mail.text
    assert "the items add up to 50.00 GBP, not the order's total of 10.00 GBP (SumUp was paid 10.00 GBP)" \
        in mail.text
    assert "The items add up to" in mail.html and "50.00 GBP" in mail.html


def test_review_alert_queued_before_the_items_were_checked_still_renders(renderer):
    """An alert row queued by an earlier version (no items total in its context) renders without it."""
    context = queued(d.ALERT_REVIEW, paid("20.00"))
    del context["expected"]["items_total"]
    mail = renderer.render(d.ALERT_REVIEW, context)
    assert "20.00" in mail.text and "The items add up to" not in mail.text + mail.html


def test_platform_key_alert_says_to_fix_the_configuration(renderer):
    """artist.id None means the platform API key was refused: the fix is SUMUP_API_KEY, not the artist."""
    context = outbox.reconnect_alert(None, "Lua Verde", "SumUp refused the API key (HTTP 401)", SETTINGS).context
    mail = renderer.render("admin_alert_reconnect_sumup", context)
    assert "SUMUP_API_KEY" in mail.text and "SUMUP_API_KEY" in mail.html
    assert "reconnect their SumUp account" not in mail.text


def test_hostile_names_are_escaped_in_html_and_verbatim_in_text(renderer):
    """Customer and event data cannot inject markup into the HTML part; the text part is not mangled."""
    order = replace(ORDER, first_name=HOSTILE, last_name="", event_title=HOSTILE)
    tickets = [dict(t, holder_name=HOSTILE) for t in TICKETS]
    for kind in ("order_confirmation", "admin_alert_late_payment"):
        context = queued(kind, paid(), replace(order, status="failed") if "late" in kind else order)
        mail = renderer.render(kind, context, tickets=tickets)
        assert "<script" not in mail.html
        assert '&lt;script&gt;alert(1)&lt;/script&gt; &amp; "Bob"' in mail.html
        assert HOSTILE in mail.text and "&lt;" not in mail.text and "&amp;" not in mail.text


def test_subject_cannot_carry_a_header(renderer):
    """An event title with CR/LF cannot start a new header line in the subject: they are shown escaped."""
    context = queued(d.CONFIRMATION, paid(), replace(ORDER, event_title="Gig\r\nBcc: evil@x\u2028\tnow"))
    subject = renderer.render("order_confirmation", context, tickets=TICKETS).subject
    assert not CONTROL.search(subject)
    assert subject == "Your tickets for Gig\\r\\nBcc: evil@x\\u2028\\tnow – order JE-7F3K2Q"


def test_clean_subject_caps_the_length():
    """A very long title cannot make an unbounded header line."""
    subject = clean_subject("x" * 500)
    assert len(subject) == 200 and subject.endswith("…")


@pytest.mark.parametrize("start, shown", [(SUMMER_START, "Saturday 18 July 2026, 19:30 (BST)"),
                                          (WINTER_START, "Saturday 12 December 2026, 18:30 (GMT)")])
def test_times_are_in_the_events_local_time(renderer, start, shown):
    """A UTC start time is shown in Europe/Jersey time, daylight saving included."""
    context = queued(d.CONFIRMATION, paid(), replace(ORDER, event_starts_at=start, event_ends_at=None))
    mail = renderer.render("order_confirmation", context, tickets=TICKETS)
    assert shown in mail.text and shown in mail.html


def test_other_timezone_setting_is_honoured():
    """PAYVERIFY_TIMEZONE changes the shown time (the filter does not hard-code Jersey)."""
    context = queued(d.CONFIRMATION, paid())
    mail = Renderer(replace(SETTINGS, timezone="America/New_York")).render("order_confirmation", context,
                                                                           tickets=TICKETS)
    assert "Saturday 12 December 2026, 13:30 (EST)" in mail.text


def test_admin_link_when_site_url_is_set_order_id_when_not():
    """Staff get a link to the order's admin page, or at least its id when the site URL is unknown."""
    context = queued(d.ALERT_REVIEW, paid("20.00"))
    link = f"{SITE}/admin/orders/order/1042/change/"
    with_site = Renderer(SETTINGS).render("admin_alert_amount_mismatch", context)
    assert link in with_site.text and f'href="{link}"' in with_site.html
    without = Renderer(Settings(site_name="Jersey Live")).render("admin_alert_amount_mismatch", context)
    assert "admin/orders" not in without.text + without.html and "href=" not in without.html
    assert "Order id 1042" in without.text and "Order id 1042" in without.html


def test_order_error_alert_for_an_order_without_a_number(renderer):
    """An erroring order whose row is gone (no number): the alert names it by id, never "None"."""
    mail = renderer.render("admin_alert_order_error", order_error_context(order_number=None))
    assert "Order id 1042" in mail.subject
    for part in (mail.text, mail.html):
        assert "None" not in part and "payverify check 1042" in part and "order id 1042" in part.lower()


def test_missing_context_key_raises(renderer):
    """StrictUndefined: a context without a key the template uses fails loudly instead of mailing a blank."""
    context, _ = samples()["order_confirmation"]
    del context["event"]["venue"]
    with pytest.raises(UndefinedError):
        renderer.render("order_confirmation", context, tickets=TICKETS)


def test_unknown_kind_is_refused(renderer):
    """A kind with no template is a programming error, reported as such."""
    with pytest.raises(ValueError, match="no mail template"):
        renderer.render("order_refund", {})


def test_templates_dir_setting_wins_and_a_wrong_one_names_the_variable(tmp_path: Path):
    """PAYVERIFY_TEMPLATES_DIR is used when set; a directory that does not exist is a config error naming it."""
    assert templates_dir(Settings(templates_dir=str(tmp_path))) == tmp_path
    assert (templates_dir(Settings()) / "order_confirmation.html").is_file()  # the source tree's templates
    with pytest.raises(ConfigError, match="PAYVERIFY_TEMPLATES_DIR"):
        templates_dir(Settings(templates_dir=str(tmp_path / "missing")))

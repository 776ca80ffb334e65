"""Mail end to end: real payverify processes, a real SMTP server (aiosmtpd), the outbox."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from io import BytesIO
from pathlib import Path

import pytest
from icalendar import Calendar
from pypdf import PdfReader

from payverify.exitcodes import ExitStatus
from payverify.mail.compose_pool import BUSY_STREAK, worker_count
from payverify_dev.sumup_server import checkout_body
from tests.conftest import ROOT
from tests.helpers import log_has, rows, scalar


@pytest.fixture
def shop(seed):
    artist = seed.artist()
    event = seed.event(artist, "Harbour Lights")
    return {"event": event, "standing": seed.ticket_type(event, "Standing", "12.50"),
            "seated": seed.ticket_type(event, "Seated", "30.00")}


def to(smtp, address):
    return [m for m in smtp.messages if address in m.rcpt_tos]


def parts(message):
    """(text, html, attachments by content type)."""
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    attachments = {a.get_content_type(): a for a in message.iter_attachments()}
    return text, html, attachments


def make_due(db):
    """Time passes: every pending message is due now."""
    with db.transaction() as tx:
        tx.fetch_sql("UPDATE payverify_outbox SET next_attempt_at = now() WHERE status = 'pending' RETURNING id")


def test_paid_order_gets_one_well_formed_mail_in_the_same_run(seed, shop, db, smtp, run_payverify):
    """The run that settles a paid order sends its confirmation: text and HTML alternatives, a PDF
    with a page per ticket carrying its code, an .ics for the event, every code in the text part."""
    order = seed.order([(shop["standing"], 2), (shop["seated"], 1)], event_id=shop["event"],
                       email="ana@example.com", first_name="Ana", last_name="Silva")
    result = run_payverify("sweep")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    mails = to(smtp, "ana@example.com")
    assert len(mails) == 1
    message = mails[0].parsed()
    assert order.order_number in message["Subject"]
    assert message["From"].addresses[0].addr_spec == "tickets@example.com"
    stored = scalar(db, "SELECT message_id FROM payverify_outbox WHERE order_id = %(id)s "
                        "AND kind = 'order_confirmation'", id=order.id)
    assert message["Message-ID"].strip() == stored
    assert message.get_content_type() == "multipart/mixed"
    text, html, attachments = parts(message)
    codes = [r["code"] for r in rows(db, "SELECT code FROM tickets_ticket WHERE order_id = %(id)s ORDER BY id",
                                     id=order.id)]
    assert len(codes) == 3
    for code in codes:
        assert code in text and code in html
    pdf = PdfReader(BytesIO(attachments["application/pdf"].get_content()))
    assert len(pdf.pages) == 3
    for page, code in zip(pdf.pages, codes, strict=True):
        assert code in page.extract_text().replace("\n", "")
    calendar = Calendar.from_ical(attachments["text/calendar"].get_content())
    (event,) = calendar.walk("VEVENT")
    assert str(event["SUMMARY"]) == "Harbour Lights"
    assert scalar(db, "SELECT status FROM payverify_outbox WHERE order_id = %(id)s", id=order.id) == "sent"


def test_confirmations_go_out_while_the_sweep_is_still_verifying(seed, shop, db, smtp, sumup, run_payverify):
    """Mail while verifying: with one SumUp request at a time and 400 ms per reply (over 6 s of
    verifying, ample for the first confirmation even on a loaded machine), the first confirmation is
    accepted by the SMTP server before the last order of the run has settled; every order still gets
    exactly one confirmation."""
    orders = [seed.order([(shop["standing"], 1)], event_id=shop["event"], email=f"fan{i}@example.com")
              for i in range(16)]
    sumup.latency = 0.4
    result = run_payverify("sweep", extra_env={"PAYVERIFY_CONCURRENCY": "1", "PAYVERIFY_SMTP_CONNECTIONS": "2"})
    assert result.returncode == 0, result.stderr
    ids = [o.id for o in orders]
    last_settled = scalar(db, "SELECT max(paid_at) FROM orders_order WHERE id = ANY(%(ids)s)", ids=ids)
    sent = rows(db, "SELECT order_id, sent_at FROM payverify_outbox WHERE kind = 'order_confirmation' "
                    "AND order_id = ANY(%(ids)s) AND status = 'sent'", ids=ids)
    assert sorted(r["order_id"] for r in sent) == sorted(ids)
    assert min(r["sent_at"] for r in sent) < last_settled
    message_ids = [m.parsed()["Message-ID"] for m in smtp.messages]
    assert len(message_ids) == len(set(message_ids)) == 16


def test_repeated_sweeps_send_nothing_twice(seed, shop, db, smtp, run_payverify):
    """A second and third sweep neither re-send the confirmation nor repeat an alert."""
    seed.order([(shop["standing"], 1)], event_id=shop["event"], email="fan@example.com")
    seed.order([(shop["seated"], 2)], event_id=shop["event"], sumup_amount="1.00")
    for _ in range(3):
        assert run_payverify("sweep").returncode == 0
    assert len(to(smtp, "fan@example.com")) == 1
    assert len(to(smtp, "alerts@coderra.je")) == 1
    assert scalar(db, "SELECT count(*) FROM payverify_outbox WHERE status <> 'sent'") == 0


def test_overlapping_sweeps_send_each_mail_once(seed, shop, db, env, smtp):
    """Three sweeps at once over 60 paid orders and a mismatch: 60 confirmations and one alert,
    each exactly once, each with its own Message-ID."""
    orders = [seed.order([(shop["standing"], 1)], event_id=shop["event"], email=f"fan{i}@example.com")
              for i in range(60)]
    seed.order([(shop["seated"], 1)], event_id=shop["event"], sumup_amount="2.00")
    procs = [subprocess.Popen([sys.executable, "-m", "payverify", "sweep"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    for i, _ in enumerate(orders):
        assert len(to(smtp, f"fan{i}@example.com")) == 1
    assert len(to(smtp, "alerts@coderra.je")) == 1
    ids = [m.parsed()["Message-ID"] for m in smtp.messages]
    assert len(ids) == len(set(ids)) == 61


def test_smtp_down_then_up_mail_goes_out_once_later(seed, shop, db, smtp, run_payverify):
    """With the SMTP server away the order still settles; the mail waits in the outbox (stderr says
    so), with no attempt counted against it and no backoff (the server failed, not the message), and
    goes out exactly once on the next run with the server back."""
    order = seed.order([(shop["standing"], 1)], event_id=shop["event"], email="late@example.com")
    down = run_payverify("sweep", extra_env={"PAYVERIFY_SMTP_URL": "smtp://127.0.0.1:1"})
    assert down.returncode == 0
    assert "SMTP unavailable" in down.stderr and "Traceback" not in down.stderr
    assert scalar(db, "SELECT status FROM orders_order WHERE id = %(id)s", id=order.id) == "completed"
    row = rows(db, "SELECT status, attempts, next_attempt_at > now() AS later, last_error FROM payverify_outbox "
                   "WHERE order_id = %(id)s", id=order.id)[0]
    assert row == {"status": "pending", "attempts": 0, "later": False,
                   "last_error": "SMTP unavailable (ConnectionRefusedError)"}
    assert run_payverify("sweep").returncode == 0
    assert run_payverify("sweep").returncode == 0
    assert len(to(smtp, "late@example.com")) == 1
    assert rows(db, "SELECT status, attempts FROM payverify_outbox WHERE order_id = %(id)s",
                id=order.id) == [{"status": "sent", "attempts": 1}]


def test_temporary_4xx_then_success(seed, shop, db, smtp, run_payverify):
    """421 from the server (it is closing the session: the server's trouble, not the message's):
    retried on the next run with no attempt counted against it, then delivered once."""
    seed.order([(shop["standing"], 1)], event_id=shop["event"], email="retry@example.com")
    smtp.script("data", "421 4.3.0 Try again later")
    assert run_payverify("sweep").returncode == 0
    assert to(smtp, "retry@example.com") == []
    assert scalar(db, "SELECT last_error FROM payverify_outbox") == "SMTP server answered 421"
    assert scalar(db, "SELECT attempts FROM payverify_outbox") == 0
    assert run_payverify("sweep").returncode == 0
    assert len(to(smtp, "retry@example.com")) == 1
    assert scalar(db, "SELECT attempts FROM payverify_outbox") == 1


def test_permanent_5xx_marks_failed_and_alerts_once(seed, shop, db, smtp, run_payverify):
    """550 for the customer's address: the row is failed, staff get exactly one 'mail failed' alert."""
    order = seed.order([(shop["standing"], 1)], event_id=shop["event"], email="nobody@example.com")
    smtp.script("rcpt", "550 5.1.1 No such user")
    assert run_payverify("sweep").returncode == 0
    assert run_payverify("sweep").returncode == 0
    assert scalar(db, "SELECT status FROM payverify_outbox WHERE kind = 'order_confirmation'") == "failed"
    alerts = to(smtp, "alerts@coderra.je")
    assert len(alerts) == 1
    assert order.order_number in alerts[0].parsed()["Subject"]
    assert scalar(db, "SELECT count(*) FROM payverify_outbox WHERE kind = 'admin_alert_mail_failed'") == 1


def test_gives_up_after_24_hours(seed, shop, db, smtp, run_payverify):
    """A message still failing temporarily 24 hours after it was queued is failed, with one alert."""
    seed.order([(shop["standing"], 1)], event_id=shop["event"], email="old@example.com")
    assert run_payverify("sweep", extra_env={"PAYVERIFY_SMTP_URL": "smtp://127.0.0.1:1"}).returncode == 0
    with db.transaction() as tx:
        tx.fetch_sql("UPDATE payverify_outbox SET created_at = now() - interval '25 hours', "
                     "next_attempt_at = now() RETURNING id")
    smtp.script("data", "451 4.7.1 Greylisted")
    assert run_payverify("sweep").returncode == 0
    assert scalar(db, "SELECT status FROM payverify_outbox WHERE kind = 'order_confirmation'") == "failed"
    assert len(to(smtp, "alerts@coderra.je")) == 1


def test_header_injection_in_customer_data(seed, shop, db, smtp, run_payverify):
    """CR/LF in a customer's name never reaches a header: no Bcc appears, the envelope is the customer."""
    seed.order([(shop["standing"], 1)], event_id=shop["event"], email="eve@example.com",
               first_name="Eve\r\nBcc: victim@example.org", last_name="<script>alert(1)</script>")
    assert run_payverify("sweep").returncode == 0
    (mail,) = smtp.messages
    assert mail.rcpt_tos == ("eve@example.com",)
    header_lines = mail.data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert not any(line.lower().startswith(b"bcc") for line in header_lines)
    message = mail.parsed()
    assert message["Bcc"] is None
    assert [a.addr_spec for a in message["To"].addresses] == ["eve@example.com"]
    _, html, _ = parts(message)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_hostile_recipient_address_is_never_used(seed, shop, db, smtp, run_payverify):
    """An order e-mail carrying a header injection is not sent at all: the row fails and staff are told."""
    seed.order([(shop["standing"], 1)], event_id=shop["event"], email="a@example.com\r\nBcc: x@evil.example")
    assert run_payverify("sweep").returncode == 0
    assert all("evil" not in r for m in smtp.messages for r in m.rcpt_tos)
    assert scalar(db, "SELECT status FROM payverify_outbox WHERE kind = 'order_confirmation'") == "failed"
    assert len(to(smtp, "alerts@coderra.je")) == 1


def test_alerts_reach_staff_once_each(seed, shop, db, smtp, run_payverify):
    """Manual review and late payment alerts go to PAYVERIFY_ALERT_EMAIL, once per order, with an admin link."""
    mismatch = seed.order([(shop["seated"], 2)], event_id=shop["event"], sumup_amount="30.00")
    late = seed.order([(shop["standing"], 1)], event_id=shop["event"], status="expired", age=timedelta(hours=3))
    for _ in range(2):
        assert run_payverify("sweep", extra_env={"PAYVERIFY_ALERT_EMAIL": "ops@example.com"}).returncode == 0
    alerts = [m.parsed() for m in to(smtp, "ops@example.com")]
    subjects = sorted(m["Subject"] for m in alerts)
    assert len(alerts) == 2
    assert any(mismatch.order_number in s for s in subjects) and any(late.order_number in s for s in subjects)
    review = next(m for m in alerts if mismatch.order_number in m["Subject"])
    text, html, _ = parts(review)
    assert "30.00" in text and "60.00" in text
    assert f"https://tickets.example.je/admin/orders/order/{mismatch.id}/change/" in html
    assert review["Auto-Submitted"] == "auto-generated"


def test_stuck_orders_digest_at_most_hourly(seed, shop, db, smtp, env):
    """Orders stuck in pending_verification past the threshold: one digest listing them, and not
    again within the hour, even with overlapping runs."""
    stuck = seed.order([(shop["standing"], 1)], event_id=shop["event"], sumup_status="PENDING",
                       age=timedelta(minutes=45))
    seed.order([(shop["standing"], 1)], event_id=shop["event"], sumup_status="PENDING", age=timedelta(minutes=5))
    for _ in range(2):
        procs = [subprocess.Popen([sys.executable, "-m", "payverify", "sweep"], env=env, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
        for proc in procs:
            proc.communicate(timeout=120)
            assert proc.returncode == 0
    digests = to(smtp, "alerts@coderra.je")
    assert len(digests) == 1
    text, _, _ = parts(digests[0].parsed())
    assert stuck.order_number in text
    assert scalar(db, "SELECT count(*) FROM payverify_outbox WHERE kind = 'admin_alert_stuck_orders'") == 1


def test_resend_sends_the_same_tickets_again(seed, shop, db, smtp, run_payverify):
    """`resend` queues and sends the confirmation again with the same ticket codes, optionally elsewhere."""
    order = seed.order([(shop["standing"], 2)], event_id=shop["event"], email="first@example.com")
    assert run_payverify("sweep").returncode == 0
    result = run_payverify("resend", order.order_number, "--to", "second@example.com")
    assert result.returncode == 0, result.stderr
    assert "sent" in result.stdout
    first, second = to(smtp, "first@example.com")[0].parsed(), to(smtp, "second@example.com")[0].parsed()
    assert first["Message-ID"] != second["Message-ID"]
    codes = [r["code"] for r in rows(db, "SELECT code FROM tickets_ticket WHERE order_id = %(id)s", id=order.id)]
    assert len(codes) == 2
    for code in codes:
        assert code in parts(second)[0]


@pytest.mark.parametrize("args", [("--to", "x@example.com\nBcc: y@example.com"), ("--to", "not-an-address")])
def test_resend_refuses_bad_addresses(seed, shop, run_payverify, args):
    """A --to that is not one plain address is a usage error (exit 2)."""
    order = seed.order([(shop["standing"], 1)], event_id=shop["event"])
    assert run_payverify("resend", order.order_number, *args).returncode == ExitStatus.USAGE


def test_resend_refuses_orders_that_are_not_completed(seed, shop, smtp, run_payverify):
    """Only a completed order has tickets to send: anything else is refused with exit 8, one line."""
    order = seed.order([(shop["standing"], 1)], event_id=shop["event"])
    result = run_payverify("resend", order.order_number)
    assert result.returncode == ExitStatus.NOT_ALLOWED
    assert "pending_verification" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert smtp.messages == []


def test_backoff_grows_to_an_hour():
    """Retries come at the next run, then 2, 4, 8 ... minutes later, never more than an hour apart."""
    from payverify.mail.sender import backoff_seconds

    assert [backoff_seconds(n) for n in range(1, 9)] == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert backoff_seconds(50) == 3600


def test_temporary_refusal_at_rcpt_keeps_the_batch_going(seed, shop, db, smtp, run_payverify):
    """451 for one recipient is that message's trouble only: it is retried later with backoff while
    the other customers' mail goes out in the same run."""
    seed.order([(shop["standing"], 1)], event_id=shop["event"], email="first@example.com")
    seed.order([(shop["standing"], 1)], event_id=shop["event"], email="second@example.com")
    smtp.script("rcpt", "451 4.3.2 Mailbox busy")
    assert run_payverify("sweep").returncode == 0
    assert len(smtp.messages) == 1
    pending = rows(db, "SELECT recipients, attempts, next_attempt_at - now() > interval '50 seconds' AS backed_off "
                       "FROM payverify_outbox WHERE status = 'pending'")
    assert len(pending) == 1 and pending[0]["attempts"] == 1 and pending[0]["backed_off"]
    make_due(db)
    assert run_payverify("sweep").returncode == 0
    assert sorted(r for m in smtp.messages for r in m.rcpt_tos) == ["first@example.com", "second@example.com"]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_server_wide_refusal_fails_no_message(seed, shop, db, run_payverify):
    """A server that refuses the session (here: it demands a login we do not have) is the server's
    trouble: every message stays pending for later, none is failed, no alert storm."""
    from payverify_dev.smtp_capture import SmtpCapture

    for i in range(3):
        seed.order([(shop["standing"], 1)], event_id=shop["event"], email=f"f{i}@example.com")
    with SmtpCapture(login=("someone", "secret"), auth_required=True) as server:
        result = run_payverify("sweep", extra_env={"PAYVERIFY_SMTP_URL": server.url()})
        assert result.returncode == 0
        assert server.messages == []
    assert scalar(db, "SELECT count(*) FROM payverify_outbox WHERE status = 'failed'") == 0
    assert scalar(db, "SELECT count(*) FROM payverify_outbox WHERE status = 'pending'") == 3
    assert scalar(db, "SELECT max(attempts) FROM payverify_outbox") <= 1


@pytest.mark.parametrize("variable, value", [("PAYVERIFY_MAIL_FROM", "Coderra Tickets tickets@coderra.je"),
                                             ("PAYVERIFY_ALERT_EMAIL", "ops@example.com; oncall"),
                                             ("PAYVERIFY_SMTP_URL", "smtp://usér:pw@127.0.0.1:25")])
def test_bad_mail_settings_stop_before_anything_changes(variable, value, seed, shop, db, run_payverify):
    """A mistyped sender, alert address or SMTP URL is a configuration error (exit 3, naming it),
    not a reason to fail every queued message."""
    order = seed.order([(shop["standing"], 1)], event_id=shop["event"])
    result = run_payverify("sweep", extra_env={variable: value})
    assert result.returncode == ExitStatus.CONFIG
    assert variable in result.stderr
    assert scalar(db, "SELECT status FROM orders_order WHERE id = %(id)s", id=order.id) == "pending_verification"


def test_alerts_go_to_every_listed_address(seed, shop, smtp, run_payverify):
    """PAYVERIFY_ALERT_EMAIL may list several addresses, separated by commas."""
    seed.order([(shop["seated"], 1)], event_id=shop["event"], sumup_amount="1.00")
    assert run_payverify("sweep", extra_env={"PAYVERIFY_ALERT_EMAIL": "ops@example.com, oncall@example.com"}
                         ).returncode == 0
    (alert,) = smtp.messages
    assert sorted(alert.rcpt_tos) == ["oncall@example.com", "ops@example.com"]


def test_stuck_digest_lists_age_and_last_answer_and_waits_an_hour(seed, shop, db, smtp, run_payverify):
    """The digest lists each stuck order with its age and SumUp's last answer; 59 minutes after one
    digest there is no other, 61 minutes after there is."""
    stuck = seed.order([(shop["standing"], 1)], event_id=shop["event"], sumup_status="PENDING",
                       age=timedelta(minutes=50))
    assert run_payverify("sweep").returncode == 0
    (digest,) = to(smtp, "alerts@coderra.je")
    text = parts(digest.parsed())[0]
    assert stuck.order_number in text and "PENDING" in text and "50" in text

    def age_digest(minutes):
        with db.transaction() as tx:
            tx.fetch_sql("UPDATE payverify_outbox SET created_at = now() - %(m)s * interval '1 minute' "
                         "WHERE kind = 'admin_alert_stuck_orders' RETURNING id", {"m": minutes})

    age_digest(59)
    assert run_payverify("sweep").returncode == 0
    assert len(to(smtp, "alerts@coderra.je")) == 1
    age_digest(61)
    assert run_payverify("sweep").returncode == 0
    assert len(to(smtp, "alerts@coderra.je")) == 2


def test_late_payment_cancels_an_unsent_payment_failed_mail(seed, shop, db, smtp, run_payverify, sumup):
    """If a failed order is rescued before its 'payment failed' mail went out, the customer gets
    only the confirmation."""
    order = seed.order([(shop["standing"], 1)], event_id=shop["event"], sumup_status="FAILED",
                       age=timedelta(minutes=40), email="rescued@example.com")
    assert run_payverify("sweep", extra_env={"PAYVERIFY_SMTP_URL": "smtp://127.0.0.1:1"}).returncode == 0
    assert scalar(db, "SELECT status FROM orders_order WHERE id = %(id)s", id=order.id) == "failed"
    sumup.update_checkout(order.checkout_id, **checkout_body(order.checkout_id, order.order_number, order.total,
                                                             "GBP", order.merchant_code, "PAID"))
    with db.transaction() as tx:  # the rescue window re-check is hourly: make it due now
        tx.fetch_sql("UPDATE payverify_order_state SET last_checked_at = now() - interval '2 hours' RETURNING 1")
    make_due(db)
    assert run_payverify("sweep").returncode == 0
    kinds = [m.parsed()["Subject"] for m in to(smtp, "rescued@example.com")]
    assert len(kinds) == 1 and "tickets" in kinds[0].lower()
    assert scalar(db, "SELECT status FROM payverify_outbox WHERE kind = 'payment_failed'") == "cancelled"


def test_421_three_times_then_accepted(seed, shop, db, smtp, run_payverify):
    """421 on three runs in a row, then the server takes it: delivered exactly once; the three 421s
    were the server's, so only the delivery counts as an attempt."""
    seed.order([(shop["standing"], 1)], event_id=shop["event"], email="patient@example.com")
    smtp.script("data", "421 4.3.0 Busy", "421 4.3.0 Busy", "421 4.3.0 Busy")
    for _ in range(4):
        assert run_payverify("sweep").returncode == 0
        make_due(db)
    assert len(to(smtp, "patient@example.com")) == 1
    assert rows(db, "SELECT status, attempts FROM payverify_outbox")[0] == {"status": "sent", "attempts": 1}


def test_connection_dropped_after_data_duplicates_at_most_once(seed, shop, db, smtp, run_payverify):
    """The server got the message but the connection died before its 250: payverify cannot know, so it
    sends again later; the customer may see it twice (the documented window), with the same Message-ID."""
    seed.order([(shop["standing"], 1)], event_id=shop["event"], email="twice@example.com")
    smtp.script("data", "drop")
    assert run_payverify("sweep").returncode == 0
    assert scalar(db, "SELECT status FROM payverify_outbox") == "pending"
    make_due(db)
    assert run_payverify("sweep").returncode == 0
    mails = to(smtp, "twice@example.com")
    assert len(mails) == 2
    assert len({m.parsed()["Message-ID"].strip() for m in mails}) == 1
    assert scalar(db, "SELECT status FROM payverify_outbox") == "sent"


def test_a_backlog_is_composed_by_worker_processes_and_each_mail_sent_once(seed, shop, db, smtp, env, run_payverify):
    """More due confirmations than a busy streak (the SMTP server was away for a run): the senders
    start worker processes to compose, and every order still gets exactly one complete confirmation,
    whichever side composed it."""
    orders = [seed.order([(shop["standing"], 1)], event_id=shop["event"], email=f"fan{i}@example.com")
              for i in range(BUSY_STREAK + 15)]
    assert run_payverify("sweep", extra_env={"PAYVERIFY_SMTP_URL": "smtp://127.0.0.1:1"}).returncode == 0
    assert smtp.messages == []
    make_due(db)
    # However slowly the workers start on a loaded machine, the last messages wait for them.
    smtp.hold(BUSY_STREAK, lambda: log_has(env["PAYVERIFY_LOG_FILE"], "mail.compose_pool_ready"))
    result = run_payverify("sweep")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    log = [json.loads(line) for line in Path(env["PAYVERIFY_LOG_FILE"]).read_text("utf-8").splitlines()]
    assert [e["processes"] for e in log if e["event"] == "mail.compose_pool_started"] == [worker_count(2)]
    composed_by = Counter(e["composed_by"] for e in log if e["event"] == "mail.sent")
    assert composed_by["worker"] > 0 and sum(composed_by.values()) == len(orders)
    codes = dict((r["order_id"], r["code"]) for r in rows(db, "SELECT order_id, code FROM tickets_ticket"))
    for i, order in enumerate(orders):
        (mail,) = to(smtp, f"fan{i}@example.com")
        _, _, attachments = parts(mail.parsed())
        (page,) = PdfReader(BytesIO(attachments["application/pdf"].get_content())).pages
        assert codes[order.id] in page.extract_text().replace("\n", "")


def test_a_run_that_stops_gives_back_the_row_it_claimed_ahead(seed, shop, db, smtp, env, run_payverify):
    """With workers composing, a sender claims its next row while it sends the current one. When the
    server goes away (421) the run stops: the row it sent and the row it had claimed ahead are both due
    again at once with no attempt counted, and nothing else was touched."""
    count, refused_at = 60, 50
    orders = [seed.order([(shop["standing"], 1)], event_id=shop["event"], email=f"fan{i}@example.com")
              for i in range(count)]
    assert run_payverify("sweep", extra_env={"PAYVERIFY_SMTP_URL": "smtp://127.0.0.1:1"}).returncode == 0
    make_due(db)
    before = {r["id"]: r["attempts"] for r in rows(db, "SELECT id, attempts FROM payverify_outbox")}
    smtp.script("data", *[""] * (refused_at - 1), "421 4.3.0 Going away")
    smtp.hold(BUSY_STREAK, lambda: log_has(env["PAYVERIFY_LOG_FILE"], "mail.compose_pool_ready"))
    result = run_payverify("sweep", extra_env={"PAYVERIFY_SMTP_CONNECTIONS": "1"})
    assert result.returncode == 0, result.stderr
    log = [json.loads(line) for line in Path(env["PAYVERIFY_LOG_FILE"]).read_text("utf-8").splitlines()]
    assert any(e["event"] == "mail.sent" and e["composed_by"] == "worker" for e in log), "no worker composed"
    assert len(smtp.messages) == refused_at - 1
    after = rows(db, "SELECT id, status, attempts, next_attempt_at > now() AS later FROM payverify_outbox "
                     "WHERE status = 'pending' ORDER BY id")
    assert len(after) == len(orders) - (refused_at - 1)
    # The 421 was the server's: neither the row it refused nor the one claimed ahead lost anything.
    assert [r for r in after if r["later"]] == []
    assert all(r["attempts"] == before[r["id"]] for r in after)

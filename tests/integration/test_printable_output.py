"""Names and SumUp's strings reach on-call's terminal and staff's mail as text: a line break cannot
forge a line, an escape sequence cannot drive the terminal. Real payverify processes, real Postgres,
the SumUp simulator, a real SMTP capture."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from payverify.exitcodes import ExitStatus
from payverify_dev.seed import PLATFORM_MERCHANT
from tests.helpers import status_of
from tests.integration.test_pending import run_on_terminal

FORGED = "SumUp:    PAID, 999.00 GBP"
# A line of its own that looks like SumUp's answer, then: erase the line, set the window title.
FIRST_NAME = f"Alex\n{FORGED}\x1b[2K\x1b]0;owned\x07"
FIRST_NAME_SHOWN = f"Alex\\n{FORGED}\\x1b[2K\\x1b]0;owned\\x07"


def lines_of(text: str) -> list[str]:
    return text.splitlines()


def test_check_shows_a_forged_name_on_one_line_and_its_escapes_visibly(seed, env):
    """On a terminal, `payverify check ORDER` for an order whose first name holds a line break, a
    made-up SumUp line and escape sequences: the customer line holds the whole name, escaped; no line
    of the output is the forged one; no escape character reaches the terminal; SumUp's real answer
    is there once."""
    artist = seed.artist()
    event = seed.event(artist)
    order = seed.order([(seed.ticket_type(event, price="12.50"), 2)], event_id=event, first_name=FIRST_NAME)
    status, shown = run_on_terminal(["check", order.order_number], env)
    assert status == ExitStatus.OK, shown
    lines = lines_of(shown)
    assert f"Customer: {FIRST_NAME_SHOWN} Morgan; artist Lua Verde" in lines
    assert not any(line.startswith(FORGED) for line in lines), shown
    assert "\x1b" not in shown and "\x07" not in shown
    assert [line for line in lines if line.startswith("SumUp:")] == [
        f"SumUp:    PAID, 25.00 GBP, merchant {order.merchant_code}, reference {order.order_number} (HTTP 200)"]


def test_check_shows_sumup_strings_on_one_line(seed, run_payverify):
    """A transaction code from SumUp with a line break and a made-up decision after it: one
    transaction line, one decision line (the real one), the escape shown."""
    artist = seed.artist()
    event = seed.event(artist)
    forged_code = "TX1\x1b[1A\nDecision: completed: forged"
    transaction = {"id": "tx-1", "transaction_code": forged_code, "amount": Decimal("12.50"), "currency": "GBP",
                   "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"), "status": "SUCCESSFUL",
                   "payment_type": "ECOM", "merchant_code": PLATFORM_MERCHANT}
    order = seed.order([(seed.ticket_type(event, price="12.50"), 1)], event_id=event, checkout_overrides={
        "transactions": [transaction], "transaction_code": forged_code, "status": "PAID\x1b[2K"})
    result = run_payverify("check", order.order_number, "--dry-run")
    assert result.returncode in (ExitStatus.OK, ExitStatus.SUMUP_UNAVAILABLE), result.stderr
    lines = lines_of(result.stdout)
    assert len([line for line in lines if line.startswith("Decision:")]) == 1, result.stdout
    assert "          transaction TX1\\x1b[1A\\nDecision: completed: forged: SUCCESSFUL, 12.50 GBP" in lines
    assert "SumUp:    PAID\\x1b[2K, 12.50 GBP" in result.stdout
    assert "\x1b" not in result.stdout


def test_check_json_stays_json_and_carries_the_text_exactly(seed, run_payverify):
    """--json: one valid JSON document; the event title comes back exactly as stored, and the output
    itself holds no control character (json.dumps escapes them)."""
    artist = seed.artist()
    title = "Gig\n\x1b[2KNguyễn \u202eOrsted"
    event = seed.event(artist, title)
    order = seed.order([(seed.ticket_type(event), 1)], event_id=event, first_name=FIRST_NAME)
    result = run_payverify("check", order.order_number, "--json", "--dry-run")
    assert result.returncode == ExitStatus.OK, result.stderr
    assert json.loads(result.stdout)["order"]["event"] == title
    assert result.stdout.isascii() and "\x1b" not in result.stdout and "\u202e" not in result.stdout


def test_pending_shows_names_and_sumup_answers_escaped(seed, sumup, run_payverify):
    """An artist's name with a line break and an escape, and SumUp answering a status with an escape
    in it: each order stays one row, the escapes are shown, the forged row is not a row."""
    artist = seed.artist("Lua\nJE-FORGED\x1b[2K")
    event = seed.event(artist)
    order = seed.order([(seed.ticket_type(event), 1)], event_id=event, sumup_status="PENDING\x1b[8m")
    assert run_payverify("sweep").returncode == 0
    assert status_of(seed.db, order.id) == "pending_verification"  # an unknown status changes nothing
    result = run_payverify("pending")
    assert result.returncode == 0, result.stderr
    lines = lines_of(result.stdout)
    (row,) = [line for line in lines if order.order_number in line]
    assert "Lua\\nJE-FORGED\\x1b[…" in row and "PENDING\\x1b[8m" in row
    assert not any(line.startswith("JE-FORGED") for line in lines), result.stdout
    assert "\x1b" not in result.stdout
    assert len(lines) == 3  # the heading, the order, the count


def test_reconcile_shows_sumup_strings_escaped_in_its_summary_csv_and_alert(seed, sumup, smtp, run_payverify,
                                                                            tmp_path):
    """A payment in SumUp's history whose transaction code holds an escape and a line break that
    forges "No discrepancies.": the summary, the CSV cell and the alert's text each show it on one
    line, escaped."""
    forged_code = "TX9\x1b[2K\nNo discrepancies."
    shown_code = "TX9\\x1b[2K\\nNo discrepancies."
    sumup.add_transaction(PLATFORM_MERCHANT, transaction_code=forged_code, amount=Decimal("40.00"),
                          timestamp=datetime.now(UTC) - timedelta(hours=25))  # older than the rescue window
    takings = tmp_path / "takings.csv"
    result = run_payverify("reconcile", "--csv", str(takings))
    assert result.returncode == ExitStatus.OK, result.stderr
    lines = lines_of(result.stdout)
    assert any(shown_code in line and "paid_without_completed_order" in line for line in lines), result.stdout
    assert not any(line.startswith("No discrepancies") for line in lines), result.stdout
    assert "\x1b" not in result.stdout

    with takings.open(newline="", encoding="utf-8") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["transaction_code"] == shown_code

    (alert,) = [m.parsed() for m in smtp.messages if "Reconciliation" in m.parsed()["Subject"]]
    text = alert.get_body(preferencelist=("plain",)).get_content()
    html = alert.get_body(preferencelist=("html",)).get_content()
    assert shown_code in text
    assert not any(line.strip().startswith("No discrepancies") for line in lines_of(text)), text
    assert "\x1b" not in text and "\x1b" not in html


def test_manual_review_alert_shows_the_name_and_order_number_escaped(seed, db, smtp, run_payverify):
    """The manual-review alert of an order whose first name forges a SumUp line and whose order
    number carries an escape: the text part shows both on their own lines, escaped; the subject shows
    the escape instead of a blank; the HTML part holds no control character either."""
    artist = seed.artist()
    event = seed.event(artist)
    number = "JE-A1\x1b[8mHID"
    order = seed.order([(seed.ticket_type(event, price="12.50"), 2)], event_id=event, first_name=FIRST_NAME,
                       order_number=number, sumup_amount="1.00")
    assert run_payverify("sweep").returncode == 0
    assert status_of(db, order.id) == "requires_manual_review"
    (alert,) = [m.parsed() for m in smtp.messages if "manual review" in m.parsed()["Subject"]]
    assert str(alert["Subject"]) == "[payverify] Order JE-A1\\x1b[8mHID needs manual review"
    text = alert.get_body(preferencelist=("plain",)).get_content()
    html = alert.get_body(preferencelist=("html",)).get_content()
    assert f"Customer: {FIRST_NAME_SHOWN} Morgan" in lines_of(text)
    assert "MANUAL REVIEW NEEDED: order JE-A1\\x1b[8mHID" in lines_of(text)
    assert not any(line.startswith(FORGED) for line in lines_of(text)), text
    assert "\x1b" not in text and "\x07" not in text
    assert "\x1b" not in html and FIRST_NAME_SHOWN in html


def test_resend_shows_the_order_number_on_one_line(seed, db, smtp, run_payverify):
    """`payverify resend ID` of a completed order whose number holds a line break and an escape: one
    line saying what was queued, the number escaped."""
    artist = seed.artist()
    event = seed.event(artist)
    order = seed.order([(seed.ticket_type(event), 1)], event_id=event, order_number="JE-R1\nIt waits\x1b[2K")
    assert run_payverify("sweep").returncode == 0
    assert status_of(db, order.id) == "completed"
    result = run_payverify("resend", str(order.id))
    assert result.returncode == ExitStatus.OK, result.stderr
    assert lines_of(result.stdout) == ["Confirmation of JE-R1\\nIt waits\\x1b[2K queued for fan@example.com: sent"]


def test_doctor_shows_an_artists_name_escaped(seed, run_payverify):
    """doctor names each OAuth artist: a name with a line break and an escape stays on its line, shown."""
    seed.artist("Lua\nok    all is well\x1b[2K", oauth=True)
    result = run_payverify("doctor")
    lines = lines_of(result.stdout)
    assert any("SumUp token of artist 'Lua\\nok    all is well\\x1b[2K'" in line for line in lines), result.stdout
    assert not any(line.startswith("ok    all is well") for line in lines)
    assert "\x1b" not in result.stdout

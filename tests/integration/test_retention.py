"""Retention: payverify's own old rows pruned in batches, at most hourly, keeping what people and
features still need; `payverify db prune`; a sent mail's row slimmed."""

from __future__ import annotations

import pytest

from payverify.exitcodes import ExitStatus
from payverify.mail.kinds import CONFIRMATION
from tests.helpers import rows


@pytest.fixture
def shop(seed):
    artist = seed.artist()
    event = seed.event(artist, "Harbour Lights")
    return {"artist": artist, "event": event, "standing": seed.ticket_type(event, "Standing", "12.50")}


# ---- a sent mail's row ----------------------------------------------------------------------------

def test_a_sent_mail_keeps_only_what_names_it_and_check_and_resend_still_work(seed, shop, db, smtp, run_payverify):
    """Once sent, a confirmation's row keeps its order id and number and the artist, not the customer's
    name, items or amounts; `check` still shows the mail as sent and `resend` sends the same tickets."""
    order = seed.order([(shop["standing"], 2)], event_id=shop["event"], email="ana@example.com", first_name="Ana",
                       last_name="Silva")
    assert run_payverify("sweep").returncode == ExitStatus.OK
    (row,) = rows(db, "SELECT context, status, recipients, time_to_ticket_seconds FROM payverify_outbox"
                      " WHERE order_id = %(id)s", id=order.id)
    assert row["status"] == "sent"
    assert row["context"] == {"order_id": order.id, "order_number": order.order_number,
                              "artist": {"id": shop["artist"].id, "name": "Lua Verde"}}
    assert row["recipients"] == ["ana@example.com"] and row["time_to_ticket_seconds"] is not None

    check = run_payverify("check", order.order_number)
    assert check.returncode == ExitStatus.OK, check.stderr
    assert f"Mail:     {CONFIRMATION} to ana@example.com: sent" in check.stdout

    resend = run_payverify("resend", order.order_number, "--to", "other@example.com")
    assert resend.returncode == ExitStatus.OK, resend.stderr
    (again,) = [m for m in smtp.messages if "other@example.com" in m.rcpt_tos]
    text = again.parsed().get_body(preferencelist=("plain",)).get_content()
    codes = [r["code"] for r in rows(db, "SELECT code FROM tickets_ticket WHERE order_id = %(id)s", id=order.id)]
    assert len(codes) == 2 and all(code in text for code in codes)
    assert "Ana" in text
    slim = rows(db, "SELECT context FROM payverify_outbox WHERE order_id = %(id)s AND status = 'sent'", id=order.id)
    assert len(slim) == 2 and all("customer_name" not in r["context"] for r in slim)

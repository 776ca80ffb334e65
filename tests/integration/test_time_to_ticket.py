"""Time to ticket end to end: real sweeps against Postgres, the SumUp simulator and a real SMTP server;
the number on the outbox row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from payverify.exitcodes import ExitStatus
from payverify.mail.kinds import CONFIRMATION
from tests.helpers import rows

TOLERANCE = 2.0  # seconds: the database's clock at "marked sent" against the SMTP server's acceptance


@pytest.fixture
def ticket_type(seed):
    event = seed.event(seed.artist())
    return event, seed.ticket_type(event)


def _order(seed, ticket_type, **kwargs):
    event, tt = ticket_type
    return seed.order([(tt, 2)], event_id=event, **kwargs)


def _set_updated_at(db, order_id: int, ago: timedelta) -> datetime:
    """The site marked the order pending_verification `ago` before now."""
    with db.transaction() as tx:
        return tx.fetch_sql("UPDATE orders_order SET updated_at = now() - %(ago)s WHERE id = %(id)s "
                            "RETURNING updated_at", {"ago": ago, "id": order_id})[0]["updated_at"]


def _paid_at_sumup(sumup, checkout_id: str, when: datetime | str) -> None:
    """SumUp recorded the successful transaction at `when` (an ISO string is sent as it is)."""
    body = sumup.get_checkout(checkout_id)
    stamp = when if isinstance(when, str) else when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    for txn in body["transactions"]:
        txn["timestamp"] = stamp
    sumup.update_checkout(checkout_id, transactions=body["transactions"])


def _confirmation(db, order_id: int) -> dict:
    found = rows(db, "SELECT status, sent_at, ticket_clock_started_at, time_to_ticket_seconds FROM payverify_outbox "
                     "WHERE order_id = %(id)s AND kind = %(kind)s ORDER BY id", id=order_id, kind=CONFIRMATION)
    assert len(found) == 1, found
    return found[0]


def _accepted_at(smtp) -> datetime:
    """When the SMTP server accepted the one message of the test (the confirmation)."""
    [message] = smtp.messages
    return message.received_at


def test_pending_verification_is_timed_from_the_sites_updated_at(seed, ticket_type, db, sumup, smtp, run_payverify):
    """An order marked pending_verification 7 minutes ago (created 20): its time to ticket is the SMTP
    acceptance minus updated_at, about 420 s; not from created_at (1200) nor SumUp's payment (0)."""
    order = _order(seed, ticket_type, status="pending_verification", age=timedelta(minutes=20))
    marked = _set_updated_at(db, order.id, timedelta(minutes=7))
    assert run_payverify("sweep").returncode == ExitStatus.OK
    row = _confirmation(db, order.id)
    assert row["status"] == "sent" and row["ticket_clock_started_at"] == marked
    accepted = _accepted_at(smtp)
    assert row["time_to_ticket_seconds"] == pytest.approx((accepted - marked).total_seconds(), abs=TOLERANCE)
    assert row["time_to_ticket_seconds"] == pytest.approx((row["sent_at"] - marked).total_seconds(), abs=0.001)
    assert 7 * 60 - 1 <= row["time_to_ticket_seconds"] <= 7 * 60 + 60


def test_pending_is_timed_from_sumups_transaction(seed, ticket_type, db, sumup, smtp, run_payverify):
    """An order still pending (the customer never came back), created 20 minutes ago, paid at SumUp
    5 minutes ago: timed from the SUCCESSFUL transaction's timestamp, about 300 s."""
    order = _order(seed, ticket_type, status="pending", age=timedelta(minutes=20))
    paid = datetime.now(UTC).replace(microsecond=250000) - timedelta(minutes=5)
    _paid_at_sumup(sumup, order.checkout_id, paid)
    assert run_payverify("sweep").returncode == ExitStatus.OK
    row = _confirmation(db, order.id)
    assert row["status"] == "sent" and row["ticket_clock_started_at"] == paid
    accepted = _accepted_at(smtp)
    assert row["time_to_ticket_seconds"] == pytest.approx((accepted - paid).total_seconds(), abs=TOLERANCE)
    assert 5 * 60 - 1 <= row["time_to_ticket_seconds"] <= 5 * 60 + 60


@pytest.mark.parametrize("stamp", ["20 minutes ago", "2026-11-26T19:51:30", "1970-01-01T00:00:00Z",
                                   "2999-01-01T00:00:00Z"])
def test_no_time_without_a_plausible_start(seed, ticket_type, db, sumup, smtp, run_payverify, stamp):
    """A pending order whose SumUp timestamp is not a time, has no zone, is before the order or far in
    the future: it settles and its mail goes as usual, with no time to ticket (never a negative one)."""
    order = _order(seed, ticket_type, status="pending", age=timedelta(minutes=20))
    _paid_at_sumup(sumup, order.checkout_id, stamp)
    assert run_payverify("sweep").returncode == ExitStatus.OK
    row = _confirmation(db, order.id)
    assert row["status"] == "sent"
    assert row["ticket_clock_started_at"] is None and row["time_to_ticket_seconds"] is None
    assert rows(db, "SELECT status FROM orders_order WHERE id = %(id)s", id=order.id)[0]["status"] == "completed"


def test_a_site_clock_ahead_gives_zero_not_a_negative(seed, ticket_type, db, smtp, run_payverify):
    """updated_at two minutes in the future (the web server's clock ahead): clamped, a time of about 0."""
    order = _order(seed, ticket_type, status="pending_verification")
    _set_updated_at(db, order.id, timedelta(minutes=-2))
    assert run_payverify("sweep").returncode == ExitStatus.OK
    row = _confirmation(db, order.id)
    assert row["ticket_clock_started_at"] is not None
    assert 0 <= row["time_to_ticket_seconds"] <= 30


def test_a_resend_has_no_time_to_ticket(seed, ticket_type, db, smtp, run_payverify):
    """The confirmation sent again on request is not the customer's first wait: no start, no time."""
    order = _order(seed, ticket_type, status="pending_verification")
    assert run_payverify("sweep").returncode == ExitStatus.OK
    assert run_payverify("resend", order.order_number).returncode == ExitStatus.OK
    sent = rows(db, "SELECT dedup_key IS NULL AS resend, time_to_ticket_seconds FROM payverify_outbox "
                    "WHERE order_id = %(id)s AND kind = %(kind)s AND status = 'sent' ORDER BY id",
                id=order.id, kind=CONFIRMATION)
    assert [r["resend"] for r in sent] == [False, True]
    assert sent[0]["time_to_ticket_seconds"] is not None and sent[1]["time_to_ticket_seconds"] is None

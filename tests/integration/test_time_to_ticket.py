"""Time to ticket end to end: real sweeps and checks against Postgres, the SumUp simulator and a real
SMTP server; the number on the outbox row, the histogram in the metrics file, and `check`'s account."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from payverify.db.queries import queries
from payverify.exitcodes import ExitStatus
from payverify.mail.kinds import CONFIRMATION
from payverify.monitoring.metrics import TIME_TO_TICKET_BUCKETS, TIME_TO_TICKET_WINDOW_MINUTES
from tests.helpers import rows
from tests.observers import histogram_buckets, parse_prometheus, value

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


def _sent_confirmation(db, seconds: float | None, sent_ago: timedelta, *, kind: str = CONFIRMATION,
                       status: str = "sent") -> None:
    """An outbox row as an earlier run left it (no order behind it: the histogram reads the outbox only)."""
    with db.transaction() as tx:
        tx.fetch_sql(
            "INSERT INTO payverify_outbox (kind, recipients, context, message_id, status, sent_at,"
            " time_to_ticket_seconds) VALUES (%(kind)s, ARRAY['fan@example.com'], '{}', gen_random_uuid()::text,"
            " %(status)s, now() - %(ago)s, %(seconds)s) RETURNING id",
            {"kind": kind, "status": status, "ago": sent_ago, "seconds": seconds})


def test_histogram_counts_the_confirmations_sent_in_the_window(seed, ticket_type, db, smtp, run_payverify, tmp_path):
    """A real sweep times three orders (~45 s, ~4 min, ~25 min); with rows already sent (3 s, 90 s) the
    metrics file's histogram counts exactly those five, cumulatively; not a row sent before the window,
    a resend (no time) or another kind."""
    for minutes in (0.75, 4, 25):
        order = _order(seed, ticket_type, status="pending_verification", age=timedelta(minutes=30))
        _set_updated_at(db, order.id, timedelta(minutes=minutes))
    _sent_confirmation(db, 3.0, timedelta(minutes=10))
    _sent_confirmation(db, 90.0, timedelta(minutes=50))
    _sent_confirmation(db, 5.0, timedelta(minutes=TIME_TO_TICKET_WINDOW_MINUTES + 5))  # before the window
    _sent_confirmation(db, None, timedelta(minutes=1))  # a resend
    _sent_confirmation(db, 7.0, timedelta(minutes=1), kind="payment_failed")
    metrics = tmp_path / "payverify.prom"
    assert run_payverify("sweep", extra_env={"PAYVERIFY_METRICS_FILE": str(metrics)}).returncode == ExitStatus.OK

    text = metrics.read_text()
    assert "# TYPE payverify_time_to_ticket_seconds histogram" in text
    samples = parse_prometheus(text)  # also checks every histogram is cumulative and +Inf is its count
    buckets = histogram_buckets(samples, "payverify_time_to_ticket_seconds")
    assert [le for le, _ in buckets] == [*TIME_TO_TICKET_BUCKETS, float("inf")]
    # 3 s, ~45 s, 90 s, ~240 s, ~1500 s
    expected = {1: 0, 2: 0, 5: 1, 10: 1, 30: 1, 60: 2, 120: 3, 300: 4, 600: 4, 1800: 5, float("inf"): 5}
    assert dict(buckets) == expected
    assert value(samples, "payverify_time_to_ticket_seconds_count") == 5
    recorded = [r["time_to_ticket_seconds"] for r in rows(
        db, "SELECT time_to_ticket_seconds FROM payverify_outbox WHERE order_id IS NOT NULL AND kind = %(kind)s",
        kind=CONFIRMATION)]
    assert len(recorded) == 3
    assert value(samples, "payverify_time_to_ticket_seconds_sum") == pytest.approx(3 + 90 + sum(recorded), abs=0.01)
    assert 45 + 240 + 1500 <= sum(recorded) <= 45 + 240 + 1500 + 3 * 60


def test_histogram_query_reads_its_index_not_the_outbox(db):
    """The histogram's query can be answered from the partial index alone: its cost does not grow with
    the outbox's history (checked on the plan, with sequential scans priced out)."""
    with db.transaction() as tx:
        tx.script("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r["QUERY PLAN"] for r in tx.fetch_sql(
            "EXPLAIN " + queries()["metrics_time_to_ticket"],
            {"kind": CONFIRMATION, "bounds": list(TIME_TO_TICKET_BUCKETS), "window_minutes": 60}))
    assert "payverify_outbox_time_to_ticket_idx" in plan, plan
    assert "Seq Scan on payverify_outbox" not in plan, plan


def test_check_shows_the_time_to_ticket(seed, ticket_type, db, smtp, run_payverify):
    """`check` settles an order marked pending_verification 3 minutes ago and shows its time to ticket
    (about 180 s) once the confirmation is sent, in --json and in the text; a later `check` of the
    completed order still shows the same number; a dry run of an unsettled order shows none."""
    order = _order(seed, ticket_type, status="pending_verification", age=timedelta(minutes=10))
    marked = _set_updated_at(db, order.id, timedelta(minutes=3))
    result = run_payverify("check", order.order_number, "--json")
    assert result.returncode == ExitStatus.OK, result.stderr
    doc = json.loads(result.stdout)
    recorded = _confirmation(db, order.id)["time_to_ticket_seconds"]
    assert doc["time_to_ticket_seconds"] == pytest.approx(recorded)
    assert 3 * 60 - 1 <= doc["time_to_ticket_seconds"] <= 3 * 60 + 60
    assert doc["mail"][0]["time_to_ticket_seconds"] == pytest.approx(recorded)

    again = run_payverify("check", order.order_number)
    assert again.returncode == ExitStatus.OK, again.stderr
    line = next(line for line in again.stdout.splitlines() if line.startswith("Ticket:"))
    assert f"accepted {round(recorded)} s (3m " in line, line
    assert f"({marked.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC)" in line, line

    waiting = _order(seed, ticket_type, status="pending_verification")
    dry = run_payverify("check", waiting.order_number, "--json", "--dry-run")
    assert json.loads(dry.stdout)["time_to_ticket_seconds"] is None
    assert not any(line.startswith("Ticket:") for line in run_payverify(
        "check", waiting.order_number, "--dry-run").stdout.splitlines())

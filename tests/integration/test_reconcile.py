"""`payverify reconcile` end to end: real processes, a real Postgres, the simulator's transaction
history, a real SMTP capture. Every kind of discrepancy found, nothing reported twice, the cursor,
an unreadable account, paging, the JSON shape and the CSV."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from payverify.exitcodes import ExitStatus
from payverify_dev.seed import PLATFORM_MERCHANT
from payverify_dev.sumup_server import Scripted
from tests.helpers import rows, scalar
from tests.observers import parse_prometheus, value

KINDS = {"refunded_after_completion", "chargeback_after_completion", "paid_without_completed_order",
         "completed_without_payment", "amount_differs"}
DISCREPANCY_KEYS = {"key", "kind", "order_number", "order_status", "transaction_code", "amount", "currency",
                    "merchant_code", "sumup_status", "detail"}


@pytest.fixture
def shop(seed):
    artist = seed.artist()
    event = seed.event(artist, "Harbour Lights")
    return {"artist": artist, "event": event, "standing": seed.ticket_type(event, "Standing", "12.50")}


def reconcile(run_payverify, *args: str, extra_env=None):
    result = run_payverify("reconcile", "--json", *args, extra_env=extra_env)
    assert result.returncode in (ExitStatus.OK, ExitStatus.SUMUP_UNAVAILABLE), result.stderr
    return result, json.loads(result.stdout)


def completed(seed, shop, db, run_payverify, n: int = 1, **order_kwargs):
    orders = [seed.order([(shop["standing"], 1)], event_id=shop["event"], **order_kwargs) for _ in range(n)]
    assert run_payverify("sweep").returncode == 0
    codes = {r["id"]: r["sumup_transaction_code"] for r in rows(
        db, "SELECT id, sumup_transaction_code FROM orders_order WHERE id = ANY(%(ids)s) AND status = 'completed'",
        ids=[o.id for o in orders])}
    assert len(codes) == n
    return [(o, codes[o.id]) for o in orders]


def alerts(smtp):
    return [m for m in smtp.messages if "Reconciliation" in m.parsed()["Subject"]]


def by_kind(output) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for d in output["discrepancies"]:
        found.setdefault(d["kind"], []).append(d)
    return found


def test_every_kind_is_found_once_and_alerted_once(seed, shop, db, smtp, sumup, run_payverify, tmp_path):
    # Paid after the rescue window: the order expired and no sweep looks at it any more. (A payment
    # younger than the rescue window whose order a sweep may still settle waits.) Made
    # first, as the site would have: its id is older than those of the orders made now.
    late = seed.order([(shop["standing"], 1)], event_id=shop["event"], status="expired", age=timedelta(hours=26))
    (ok, _), (refunded, refunded_code), (partial, partial_code), (charged_back, cb_code), (changed, _) = \
        completed(seed, shop, db, run_payverify, 5)
    sumup.update_transaction(PLATFORM_MERCHANT, refunded_code, status="REFUNDED", refunded_amount=Decimal("12.50"))
    sumup.update_transaction(PLATFORM_MERCHANT, partial_code, refunded_amount=Decimal("5.00"))
    sumup.update_transaction(PLATFORM_MERCHANT, cb_code, status="CHARGE_BACK")
    with db.transaction() as tx:  # a data error on the site: the order's total changed after payment
        tx.fetch_sql("UPDATE orders_order SET total = 99.00 WHERE id = %(id)s RETURNING id", {"id": changed.id})
        # completed by hand, with a transaction SumUp never had
        tx.fetch_sql("UPDATE orders_order SET status = 'completed', sumup_transaction_code = 'TNOSUCHTX1', "
                     "paid_at = now() WHERE id = %(id)s RETURNING id",
                     {"id": seed.order([(shop["standing"], 1)], event_id=shop["event"], sumup_status=None).id})
    a_day_ago = datetime.now(UTC) - timedelta(hours=25)
    sumup.update_transaction(PLATFORM_MERCHANT, sumup.get_checkout(late.checkout_id)["transactions"][0]
                             ["transaction_code"], timestamp=a_day_ago)
    stray = sumup.add_transaction(PLATFORM_MERCHANT, transaction_code="TSTRAYPAY1", amount=Decimal("40.00"),
                                  timestamp=a_day_ago)
    young = sumup.add_transaction(PLATFORM_MERCHANT, transaction_code="TYOUNGPAY1", amount=Decimal("12.50"))
    sumup.add_transaction(PLATFORM_MERCHANT, transaction_code="TPOSMERCH1", amount=Decimal("8.00"),
                          payment_type="POS")  # the merch stand's card reader: not a ticket order
    sumup.add_transaction(PLATFORM_MERCHANT, transaction_code="TCASHBAR01", amount=Decimal("4.00"),
                          payment_type="CASH")

    takings = tmp_path / "takings.csv"
    result, output = reconcile(run_payverify, "--csv", str(takings))
    assert result.returncode == ExitStatus.OK, result.stderr
    found = by_kind(output)
    assert set(found) == KINDS
    assert {d["order_number"] for d in found["refunded_after_completion"]} == {refunded.order_number,
                                                                                partial.order_number}
    partial_row = next(d for d in found["refunded_after_completion"] if d["order_number"] == partial.order_number)
    assert "5.00 GBP of 12.50 GBP" in partial_row["detail"]
    assert [d["order_number"] for d in found["chargeback_after_completion"]] == [charged_back.order_number]
    assert [d["order_number"] for d in found["amount_differs"]] == [changed.order_number]
    assert [d["transaction_code"] for d in found["completed_without_payment"]] == ["TNOSUCHTX1"]
    paid = {d["transaction_code"]: d for d in found["paid_without_completed_order"]}
    assert paid[stray["transaction_code"]]["order_number"] is None
    late_payment = next(d for code, d in paid.items() if code != stray["transaction_code"])
    assert (late_payment["order_number"], late_payment["order_status"]) == (late.order_number, "expired")
    with takings.open(newline="", encoding="utf-8") as fh:  # the CSV names the order its checkout found
        table = {r["transaction_code"]: r for r in csv.DictReader(fh)}
    late_row = table[late_payment["transaction_code"]]
    assert (late_row["order_number"], late_row["order_status"]) == (late.order_number, "expired")
    assert (table[stray["transaction_code"]]["order_number"], table["TPOSMERCH1"]["order_number"]) == ("", "")
    assert ok.order_number not in {d["order_number"] for d in output["discrepancies"]}
    # Minutes old, but no order a sweep could settle owns it: reported at once, not a day later.
    assert paid[young["transaction_code"]]["order_number"] is None
    for d in output["discrepancies"]:
        assert set(d) >= DISCREPANCY_KEYS
        assert d["amount"] is None or Decimal(d["amount"]) == Decimal(d["amount"]).quantize(Decimal("0.01"))
    # One digest listing them all; nothing about an order changed.
    (alert,) = alerts(smtp)
    text = alert.parsed().get_body(preferencelist=("plain",)).get_content()
    for d in output["discrepancies"]:
        assert d["kind"] in text and (d["order_number"] or d["transaction_code"]) in text
    assert scalar(db, "SELECT status FROM orders_order WHERE id = %(id)s", id=refunded.id) == "completed"
    assert scalar(db, "SELECT status FROM orders_order WHERE id = %(id)s", id=late.id) == "expired"

    # The next run: nothing new, no second alert.
    again, second = reconcile(run_payverify)
    assert again.returncode == ExitStatus.OK
    assert [d for d in second["discrepancies"] if d["new"]] == []
    assert len(alerts(smtp)) == 1

    # A refund made after the first run is found by the next one, and only it is new.
    sumup.update_transaction(PLATFORM_MERCHANT, _code_of(db, ok.id), status="REFUNDED",
                             refunded_amount=Decimal("12.50"))
    _, third = reconcile(run_payverify)
    assert [(d["kind"], d["order_number"]) for d in third["discrepancies"] if d["new"]] == \
           [("refunded_after_completion", ok.order_number)]
    assert len(alerts(smtp)) == 2


def _code_of(db, order_id: int) -> str:
    return scalar(db, "SELECT sumup_transaction_code FROM orders_order WHERE id = %(id)s", id=order_id)


def test_the_json_shape_and_the_totals(seed, shop, db, sumup, run_payverify):
    completed(seed, shop, db, run_payverify, 3)
    sumup.add_transaction(PLATFORM_MERCHANT, transaction_code="TPOSMERCH1", amount=Decimal("8.00"),
                          payment_type="POS")
    _, output = reconcile(run_payverify, "--since", "1d")
    assert set(output) >= {"window", "accounts", "totals", "discrepancies"}
    (account,) = output["accounts"]
    assert (account["merchant_code"], account["ok"], account["error"]) == (PLATFORM_MERCHANT, True, None)
    assert output["totals"] == {"GBP": {"sumup": "37.50", "orders": "37.50", "difference": "0.00"}}
    assert output["discrepancies"] == []


def test_dry_run_alerts_nothing_and_keeps_no_cursor(seed, shop, db, smtp, sumup, run_payverify):
    (_, code), = completed(seed, shop, db, run_payverify)
    sumup.update_transaction(PLATFORM_MERCHANT, code, status="CHARGE_BACK")
    result = run_payverify("reconcile", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "chargeback_after_completion" in result.stdout and "dry run" in result.stdout
    assert alerts(smtp) == []
    assert scalar(db, "SELECT count(*) FROM payverify_reconcile_cursor") == 0
    assert scalar(db, "SELECT count(*) FROM payverify_reconcile_reported") == 0
    _, output = reconcile(run_payverify)
    assert [d["kind"] for d in output["discrepancies"] if d["new"]] == ["chargeback_after_completion"]


def test_an_unreadable_account_is_reported_and_the_others_carry_on(seed, shop, db, smtp, sumup, run_payverify):
    (_, code), = completed(seed, shop, db, run_payverify)
    sumup.update_transaction(PLATFORM_MERCHANT, code, status="REFUNDED", refunded_amount=Decimal("12.50"))
    other = seed.artist("Tide Pool", oauth=True)
    sumup.script_history(other.merchant_code, *[Scripted(status=503)] * 3)  # each of the client's attempts
    result, output = reconcile(run_payverify)
    assert result.returncode == ExitStatus.SUMUP_UNAVAILABLE
    accounts = {a["merchant_code"]: a for a in output["accounts"]}
    assert accounts[PLATFORM_MERCHANT]["ok"] is True
    assert accounts[other.merchant_code]["ok"] is False and "503" in accounts[other.merchant_code]["error"]
    assert [d["kind"] for d in output["discrepancies"]] == ["refunded_after_completion"]
    # The unread account keeps no cursor; the read one does.
    cursors = {r["merchant_code"] for r in rows(db, "SELECT merchant_code FROM payverify_reconcile_cursor")}
    assert cursors == {PLATFORM_MERCHANT}
    # The read account's alert is its own: the unread one found nothing to alert about (exit 7 and its
    # line say why it was not read).
    (alert,) = alerts(smtp)
    text = alert.parsed().get_body(preferencelist=("plain",)).get_content()
    assert "refunded_after_completion" in text and "Tide Pool" not in text


def test_pages_are_followed_to_the_end_and_the_csv_has_every_transaction(seed, shop, db, sumup, run_payverify,
                                                                        tmp_path):
    (order, code), = completed(seed, shop, db, run_payverify)
    start = datetime.now(UTC) - timedelta(hours=2)
    for i in range(250):
        sumup.add_transaction(PLATFORM_MERCHANT, transaction_code=f"TPOS{i:06d}", amount=Decimal("3.00"),
                              payment_type="POS", timestamp=start + timedelta(seconds=i))
    target = tmp_path / "takings.csv"
    result, output = reconcile(run_payverify, "--since", "1d", "--csv", str(target))
    assert result.returncode == 0
    assert output["accounts"][0]["transactions"] == 251
    with target.open(newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 251
    (ticket,) = [r for r in table if r["transaction_code"] == code]
    assert (ticket["order_number"], ticket["order_status"], ticket["amount"]) == (order.order_number, "completed",
                                                                                   "12.50")
    assert len(sumup.history_requests(PLATFORM_MERCHANT)) == 3  # 100 + 100 + 51


def test_under_cron_it_is_silent_unless_something_must_be_read(seed, shop, db, sumup, run_payverify):
    (_, code), = completed(seed, shop, db, run_payverify)
    quiet = run_payverify("reconcile")  # stdout is a pipe here, as under cron
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    sumup.update_transaction(PLATFORM_MERCHANT, code, status="CHARGE_BACK")
    loud = run_payverify("reconcile")
    assert loud.returncode == 0, loud.stderr
    assert "chargeback_after_completion" in loud.stdout and "NEW" in loud.stdout
    again = run_payverify("reconcile")  # known by now: nothing to read
    assert (again.returncode, again.stdout) == (0, "")


def test_the_metrics_count_discrepancies_by_kind_and_the_last_reconcile(seed, shop, db, sumup, run_payverify,
                                                                       tmp_path):
    metrics = tmp_path / "payverify.prom"
    (_, code), = completed(seed, shop, db, run_payverify)
    sumup.update_transaction(PLATFORM_MERCHANT, code, status="CHARGE_BACK")
    before = datetime.now(UTC).timestamp()
    assert run_payverify("reconcile", extra_env={"PAYVERIFY_METRICS_FILE": str(metrics)}).returncode == 0
    samples = parse_prometheus(metrics.read_text())
    assert value(samples, "payverify_reconcile_discrepancies", kind="chargeback_after_completion") == 1
    assert value(samples, "payverify_last_successful_reconcile_timestamp_seconds") >= before - 1
    # The sweep's metrics are still the sweep's: a reconciliation does not replace them.
    assert value(samples, "payverify_runs_total", exit_status="0") >= 1


def test_a_young_payment_no_sweep_can_settle_is_reported_by_the_first_run(seed, shop, db, smtp, sumup,
                                                                          run_payverify):
    # All paid minutes ago. The site cancelled one order while its customer paid; a sweep never
    # settles a cancelled order, so waiting for one tells staff a day or two late.
    cancelled = seed.order([(shop["standing"], 1)], event_id=shop["event"], status="cancelled")
    stray = sumup.add_transaction(PLATFORM_MERCHANT, transaction_code="TSTRAYNOW1", amount=Decimal("40.00"))
    # These a sweep will still settle: they wait.
    waiting = seed.order([(shop["standing"], 2)], event_id=shop["event"], status="pending_verification")
    rescued = seed.order([(shop["standing"], 3)], event_id=shop["event"], status="expired", age=timedelta(hours=3))

    result, output = reconcile(run_payverify)
    assert result.returncode == ExitStatus.OK, result.stderr
    paid = {d["transaction_code"]: d for d in by_kind(output).get("paid_without_completed_order", [])}
    cancelled_code = _checkout_code(sumup, cancelled)
    assert set(paid) == {cancelled_code, stray["transaction_code"]}
    assert (paid[cancelled_code]["order_number"], paid[cancelled_code]["order_status"]) == \
           (cancelled.order_number, "cancelled")
    assert paid[stray["transaction_code"]]["order_number"] is None
    assert all(d["new"] for d in paid.values())
    (alert,) = alerts(smtp)
    assert cancelled.order_number in alert.parsed().get_body(preferencelist=("plain",)).get_content()
    # The ones that wait are settled by the sweep, and then are nothing to report.
    assert run_payverify("sweep").returncode == 0
    assert scalar(db, "SELECT count(*) FROM orders_order WHERE id = ANY(%(ids)s) AND status = 'completed'",
                  ids=[waiting.id, rescued.id]) == 2
    _, again = reconcile(run_payverify)
    assert [d for d in again["discrepancies"] if d["new"]] == []


def _checkout_code(sumup, order) -> str:
    return sumup.get_checkout(order.checkout_id)["transactions"][0]["transaction_code"]

"""`payverify reconcile` when a run dies or one account goes wrong: real processes, a real Postgres, the
simulator's history, a real SMTP capture. A kill between two accounts loses no finding; an exception in
one account leaves the others reconciled; a transaction whose fields cannot be taken is skipped."""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from payverify.exitcodes import ExitStatus
from payverify_dev.seed import PLATFORM_MERCHANT
from payverify_dev.sumup_server import Scripted
from tests.helpers import rows, scalar


@pytest.fixture
def accounts(seed):
    """Two merchant accounts, read in this order: the platform API key's, then an artist's (OAuth)."""
    made = {}
    for name, oauth in (("Lua Verde", False), ("Tide Pool", True)):
        artist = seed.artist(name, oauth=oauth)
        event = seed.event(artist, f"{name} live")
        made[artist.merchant_code] = (event, seed.ticket_type(event, "Standing", "12.50"))
    assert next(iter(made)) == PLATFORM_MERCHANT
    return made


def refunded_after_completion(seed, db, sumup, accounts, merchant: str, code: str, *, ago: timedelta):
    """A completed order whose payment, made `ago`, SumUp shows refunded (back-dated: changes_since
    after that time does not find it again)."""
    event, standing = accounts[merchant]
    order = seed.order([(standing, 1)], event_id=event, sumup_status=None)
    paid = datetime.now(UTC) - ago
    with db.transaction() as tx:
        tx.fetch_sql("UPDATE orders_order SET status = 'completed', sumup_transaction_code = %(code)s, "
                     "paid_at = %(paid)s WHERE id = %(id)s RETURNING id", {"code": code, "paid": paid, "id": order.id})
    sumup.add_transaction(merchant, transaction_code=code, amount=order.total, status="REFUNDED",
                          refunded_amount=order.total, timestamp=paid)
    return order


def alert_texts(smtp) -> list[str]:
    return [m.parsed().get_body(preferencelist=("plain",)).get_content() for m in smtp.messages
            if "Reconciliation" in m.parsed()["Subject"]]


def reported(db) -> list[str]:
    return [r["order_number"] for r in rows(db, "SELECT order_number FROM payverify_reconcile_reported "
                                                "ORDER BY order_number")]


def test_a_run_killed_between_accounts_loses_no_finding(seed, db, smtp, sumup, run_payverify, accounts):
    # The platform's refund is 25 hours old: the first run (7 days back) reads it, and a cursor that
    # moved past it without it being recorded would never read it again.
    first = refunded_after_completion(seed, db, sumup, accounts, PLATFORM_MERCHANT, "TOLDREFND1",
                                      ago=timedelta(hours=25))
    artist_merchant = list(accounts)[1]
    second = refunded_after_completion(seed, db, sumup, accounts, artist_merchant, "TNEWREFND1",
                                       ago=timedelta(hours=1))

    killed = run_payverify("reconcile", extra_env={"PAYVERIFY_FAULT": "after_reconcile_account@1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    clean = run_payverify("reconcile", "--json")
    assert clean.returncode == ExitStatus.OK, clean.stderr

    assert reported(db) == sorted([first.order_number, second.order_number])
    texts = alert_texts(smtp)
    for order in (first, second):  # each in exactly one alert mail
        assert sum(order.order_number in text for text in texts) == 1
    # And a third run has nothing new to say.
    again = run_payverify("reconcile", "--json")
    assert [d for d in json.loads(again.stdout)["discrepancies"] if d["new"]] == []
    assert len(alert_texts(smtp)) == len(texts)


def test_an_exception_in_one_account_leaves_the_others_reconciled(seed, db, smtp, sumup, run_payverify, accounts):
    refunded_after_completion(seed, db, sumup, accounts, PLATFORM_MERCHANT, "TPLATFRM01", ago=timedelta(hours=1))
    artist_merchant = list(accounts)[1]
    artists = refunded_after_completion(seed, db, sumup, accounts, artist_merchant, "TARTIST001",
                                        ago=timedelta(hours=1))
    result = run_payverify("reconcile", "--json", extra_env={"PAYVERIFY_FAULT": "in_reconcile_account@1:raise"})
    assert result.returncode == ExitStatus.SUMUP_UNAVAILABLE, result.stderr
    assert "Traceback" not in result.stderr
    output = json.loads(result.stdout)
    by_code = {a["merchant_code"]: a for a in output["accounts"]}
    assert by_code[PLATFORM_MERCHANT]["ok"] is False and "InjectedFault" in by_code[PLATFORM_MERCHANT]["error"]
    assert by_code[artist_merchant]["ok"] is True
    assert [d["order_number"] for d in output["discrepancies"]] == [artists.order_number]
    # The failed account keeps no cursor: the next run reads it from where it stood, and finds its refund.
    assert {r["merchant_code"] for r in rows(db, "SELECT merchant_code FROM payverify_reconcile_cursor")} == \
           {artist_merchant}
    clean = run_payverify("reconcile", "--json")
    assert clean.returncode == ExitStatus.OK, clean.stderr
    assert [d["transaction_code"] for d in json.loads(clean.stdout)["discrepancies"] if d["new"]] == ["TPLATFRM01"]


def test_a_transaction_whose_time_cannot_be_taken_is_skipped_not_fatal(seed, db, smtp, sumup, run_payverify,
                                                                       accounts, env):
    # Year 1 an hour east of UTC is before the first instant a datetime can hold in UTC.
    refunded_after_completion(seed, db, sumup, accounts, PLATFORM_MERCHANT, "TPLATFRM01", ago=timedelta(hours=1))
    sumup.add_transaction(PLATFORM_MERCHANT, transaction_code="TBADTIME01", amount=Decimal("12.50"))
    sumup.update_transaction(PLATFORM_MERCHANT, "TBADTIME01", timestamp="0001-01-01T00:00:00+01:00")
    artist_merchant = list(accounts)[1]
    refunded_after_completion(seed, db, sumup, accounts, artist_merchant, "TARTIST001", ago=timedelta(hours=1))

    result = run_payverify("reconcile", "--json")
    assert result.returncode == ExitStatus.OK, result.stderr
    output = json.loads(result.stdout)
    by_code = {a["merchant_code"]: a for a in output["accounts"]}
    assert by_code[PLATFORM_MERCHANT]["ok"] is True and by_code[PLATFORM_MERCHANT]["skipped"] == 1
    assert by_code[artist_merchant]["ok"] is True and by_code[artist_merchant]["skipped"] == 0
    assert sorted(d["transaction_code"] for d in output["discrepancies"]) == ["TARTIST001", "TPLATFRM01"]
    with open(env["PAYVERIFY_LOG_FILE"], encoding="utf-8") as fh:
        skipped = [line for line in fh if "reconcile.transaction_skipped" in line]
    assert len(skipped) == 1 and "TBADTIME01" in skipped[0]
    # Under cron (stdout a pipe) the skip is something a person must read.
    quiet = run_payverify("reconcile")
    assert quiet.returncode == ExitStatus.OK and "1 skipped" in quiet.stdout
    assert scalar(db, "SELECT count(*) FROM payverify_reconcile_reported") == 2


def test_what_an_account_found_before_it_failed_is_alerted_and_read_again(seed, db, smtp, sumup, run_payverify,
                                                                          accounts):
    # The refund comes first (ascending order); the history fails on its sixth page, after the first
    # chunk of 500 transactions was judged.
    order = refunded_after_completion(seed, db, sumup, accounts, PLATFORM_MERCHANT, "TFIRSTREF1",
                                      ago=timedelta(hours=3))
    start = datetime.now(UTC) - timedelta(hours=2)
    for i in range(600):
        sumup.add_transaction(PLATFORM_MERCHANT, transaction_code=f"TPOS{i:06d}", amount=Decimal("3.00"),
                              payment_type="POS", timestamp=start + timedelta(seconds=i))
    sumup.script_history(PLATFORM_MERCHANT, *[Scripted()] * 5, *[Scripted(status=503)] * 3)
    result = run_payverify("reconcile", "--json")
    assert result.returncode == ExitStatus.SUMUP_UNAVAILABLE, result.stderr
    (account,) = [a for a in json.loads(result.stdout)["accounts"] if a["merchant_code"] == PLATFORM_MERCHANT]
    assert account["ok"] is False and "503" in account["error"]
    assert reported(db) == [order.order_number]
    (text,) = alert_texts(smtp)
    assert order.order_number in text and "NOT READ TO THE END" in text
    assert scalar(db, "SELECT count(*) FROM payverify_reconcile_cursor WHERE merchant_code = %(m)s",
                  m=PLATFORM_MERCHANT) == 0
    # The next run reads it all again: nothing new, and now the cursor moves.
    again = run_payverify("reconcile", "--json")
    assert again.returncode == ExitStatus.OK, again.stderr
    assert [d for d in json.loads(again.stdout)["discrepancies"] if d["new"]] == []
    assert len(alert_texts(smtp)) == 1
    assert scalar(db, "SELECT count(*) FROM payverify_reconcile_cursor WHERE merchant_code = %(m)s",
                  m=PLATFORM_MERCHANT) == 1

"""`payverify reconcile` reads SumUp's amounts however SumUp writes them: a real process, a real
Postgres, the simulator's checkouts and transaction history."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import requests

from payverify.exitcodes import ExitStatus
from payverify_dev.seed import PLATFORM_KEY, PLATFORM_MERCHANT


def test_owner_of_a_whole_number_payment_is_named(seed, db, sumup, run_payverify):
    """A payment of 25.00 that SumUp writes as `"amount": 25` (in the checkout and in the history),
    whose order expired and is out of every sweep's reach: reconcile reports it naming that order,
    found through the order's checkout."""
    artist = seed.artist()
    event = seed.event(artist)
    standing = seed.ticket_type(event, "Standing", "12.50")
    late = seed.order([(standing, 2)], event_id=event, status="expired", age=timedelta(hours=26),
                      sumup_amount=Decimal("25"))
    code = sumup.get_checkout(late.checkout_id)["transactions"][0]["transaction_code"]
    sumup.update_transaction(PLATFORM_MERCHANT, code, timestamp=datetime.now(UTC) - timedelta(hours=25))
    served = requests.get(f"{sumup.url}/v0.1/checkouts/{late.checkout_id}", timeout=10,
                          headers={"Authorization": f"Bearer {PLATFORM_KEY}"})
    assert '"amount": 25,' in served.text  # a JSON integer on the wire, not 25.0 or 25.00

    result = run_payverify("reconcile", "--json")
    assert result.returncode == ExitStatus.OK, result.stderr
    (found,) = json.loads(result.stdout)["discrepancies"]
    assert (found["kind"], found["transaction_code"]) == ("paid_without_completed_order", code)
    assert (found["order_number"], found["order_status"]) == (late.order_number, "expired")
    assert Decimal(found["amount"]) == Decimal("25.00")


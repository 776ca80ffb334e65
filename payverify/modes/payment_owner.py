"""Whose order a SumUp payment is, when no completed order names it: the reconciliation asks the
checkouts of the likely not-completed orders (same merchant, amount and currency, created near the
payment) whether they list it. A payment may be reported without its order, never with a wrong one.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from payverify.db import Database
from payverify.errors import PayverifyError
from payverify.orders.reconcile import ReconciledOrder
from payverify.secret import Secret
from payverify.sumup.checkout import BodyNotUnderstood, parse_checkout
from payverify.sumup.client import Reply, SumUpClient, SumUpUnavailable
from payverify.sumup.credentials import Credentials, TokenOwner
from payverify.sumup.history import HistoryItem

OWNER_CANDIDATES = 3  # not-completed orders whose checkout is asked about an unexplained payment
OWNER_WINDOW = (timedelta(hours=26), timedelta(hours=1))  # created this long before it, or after (clocks)


def reconciled_order(row: dict[str, Any]) -> ReconciledOrder:
    return ReconciledOrder(id=row["id"], order_number=row["order_number"], status=row["status"],
                           total=row["total"], currency=row["currency"], merchant_code=row["merchant_code"],
                           transaction_code=row["transaction_code"], paid_at=row["paid_at"],
                           created_at=row["created_at"])


def near(orders: list[dict[str, Any]], item: HistoryItem) -> list[dict[str, Any]]:
    """Those of `orders` that may be this payment's, nearest first, as reconcile_open_orders_near picks."""
    if item.amount is None or item.currency is None or item.timestamp is None:
        return []
    paid_at, currency = item.timestamp, item.currency.upper()
    lo, hi = paid_at - OWNER_WINDOW[0], paid_at + OWNER_WINDOW[1]
    found = [o for o in orders
             if o["total"] == item.amount and o["currency"].upper() == currency and lo <= o["created_at"] <= hi]
    return sorted(found, key=lambda o: (abs(o["created_at"] - paid_at), o["id"]))


def owner(db: Database, client: SumUpClient, credentials: Credentials, code: str, item: HistoryItem,
          candidates: list[dict[str, Any]] | None = None) -> tuple[ReconciledOrder | None, bool]:
    """The not-completed order whose checkout lists this payment, if one of the likely ones (or of
    `candidates`) does; and whether "none" is unsure: a likely checkout could not be read, or there
    were more likely ones than are asked about (an on-sale burst of orders of one amount)."""
    if item.amount is None or item.currency is None or item.timestamp is None:
        return None, True
    if candidates is None:
        with db.transaction() as tx:
            candidates = tx.all("reconcile_open_orders_near", amount=item.amount, currency=item.currency,
                                merchant_code=code, paid_at=item.timestamp, limit=OWNER_CANDIDATES + 1)
    unsure = len(candidates) > OWNER_CANDIDATES
    for row in candidates[:OWNER_CANDIDATES]:
        artist = TokenOwner(row["artist_id"], row["artist_name"], row["artist_uses_oauth"])
        checkout_id: str = row["checkout_id"]

        def request(token: Secret, checkout_id: str = checkout_id) -> Reply:
            return client.get_checkout(checkout_id, token)

        try:
            reply = credentials.call(artist, request, about=f"checkout of order {row['order_number']}").reply
        except (SumUpUnavailable, PayverifyError, ValueError):
            unsure = True  # an old payment is reported all the same, without its order
            continue
        if reply.status != 200:
            unsure = unsure or reply.status != 404  # 404: that checkout is no one's, so not this payment's
            continue
        try:
            checkout = parse_checkout(reply.text)
        except BodyNotUnderstood:
            unsure = True
            continue
        if any(t.transaction_code == item.transaction_code for t in checkout.transactions):
            return reconciled_order(row), False
    return None, unsure

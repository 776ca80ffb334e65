"""The transaction history the SumUp simulator keeps for each merchant, and its one route's paging.

`GET /v2.1/merchants/{code}/transactions/history` as SUMUP.md and the `sumup` SDK describe it: items
ordered by their timestamp (newest first unless `order=ascending`), at most `limit` (default 10, at
most 100) a page, and a `next` link whose query string is the request's own plus a cursor:
`newest_ref` (descending) or `oldest_ref` (ascending), the id of the page's last item, exclusive.
`changes_since` finds what was created or modified since then (a later refund or chargeback).

Not thread-safe by itself: FakeSumUp calls it under its lock.
"""
from __future__ import annotations

import bisect
import contextlib
import datetime as _dt
import itertools
import re
import uuid
from decimal import Decimal
from urllib.parse import parse_qsl, urlencode

DEFAULT_LIMIT, MAX_LIMIT = 10, 100
_SINGLE = ("order", "limit", "oldest_time", "newest_time", "changes_since", "oldest_ref", "newest_ref",
           "transaction_code")
_LISTS = {"statuses[]": "status", "payment_types[]": "payment_type", "types[]": "type"}
# Real filters the simulator does not model: refused loudly rather than ignored, so no test trusts them.
_NOT_SIMULATED = ("users[]", "entry_modes[]")


class BadQuery(ValueError):
    """A query parameter SumUp would answer 400 for; the message goes into the Error body."""


def format_time(when: _dt.datetime) -> str:
    """SumUp's transaction timestamp style: UTC, milliseconds, "Z"."""
    when = when.astimezone(_dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def parse_time(text: str) -> _dt.datetime:
    """An ISO 8601 time as a query carries it; one without an offset is taken as UTC."""
    try:
        when = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadQuery(f"not an ISO 8601 time: {text[:40]!r}") from None
    return when.replace(tzinfo=_dt.UTC) if when.utcoffset() is None else when


def history_item(*, id: str, transaction_code: str, amount: Decimal, currency: str, status: str,
                 payment_type: str, type: str, timestamp: _dt.datetime, refunded_amount: Decimal | None = None,
                 product_summary: str | None = None) -> dict:
    """One item as SumUp's TransactionHistory model names its fields."""
    item = {"id": id, "transaction_id": id, "transaction_code": transaction_code, "amount": amount,
            "currency": currency, "status": status, "type": type, "payment_type": payment_type,
            "timestamp": format_time(timestamp)}
    if refunded_amount is not None:
        item["refunded_amount"] = refunded_amount
    if product_summary is not None:
        item["product_summary"] = product_summary
    return item


class _Entry:
    __slots__ = ("item", "key", "modified", "ref")

    def __init__(self, item: dict, key: tuple[_dt.datetime, int], modified: _dt.datetime, ref: str) -> None:
        self.item, self.key, self.modified, self.ref = item, key, modified, ref


class HistoryLedger:
    """One merchant's transactions, kept sorted by (timestamp, arrival) so a page is a slice, not a sort."""

    def __init__(self) -> None:
        self._keys: list[tuple[_dt.datetime, int]] = []
        self._entries: dict[int, _Entry] = {}
        self._by_code: dict[str, _Entry] = {}
        self._by_ref: dict[str, _Entry] = {}
        self._seq = itertools.count()

    def __contains__(self, transaction_code: object) -> bool:
        return transaction_code in self._by_code

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, item: dict, *, timestamp: _dt.datetime) -> dict:
        """Store `item` (its id and transaction_code unique here); it counts as modified at `timestamp`."""
        code, ref = item["transaction_code"], item["id"]
        if code in self._by_code or ref in self._by_ref:
            raise ValueError(f"transaction {code!r} (id {ref!r}) is already in this merchant's history")
        entry = _Entry(item, (timestamp, next(self._seq)), timestamp, ref)
        bisect.insort(self._keys, entry.key)  # in time order, as usually added, this appends
        self._entries[entry.key[1]] = entry
        self._by_code[code] = self._by_ref[ref] = entry
        return item

    def get(self, transaction_code: str) -> dict | None:
        entry = self._by_code.get(transaction_code)
        return entry.item if entry else None

    def update(self, transaction_code: str, fields: dict, *, now: _dt.datetime) -> dict:
        """Merge `fields` in verbatim (wrong types too, for tests) and mark the item modified `now`.

        A datetime `timestamp` moves the item in the order; the id the cursor uses stays what it was."""
        entry = self._by_code[transaction_code]
        if "transaction_code" in fields and fields["transaction_code"] != transaction_code:
            raise ValueError("a transaction's code cannot change: add another transaction instead")
        when = fields.get("timestamp")
        if isinstance(when, _dt.datetime):
            if when.utcoffset() is None:
                raise ValueError("timestamp must be timezone-aware")
            self._keys.pop(bisect.bisect_left(self._keys, entry.key))
            entry.key = (when, entry.key[1])
            bisect.insort(self._keys, entry.key)
            fields = {**fields, "timestamp": format_time(when)}
        entry.item.update(fields)
        entry.modified = now
        return entry.item

    def page(self, query: str) -> tuple[int, dict]:
        """(status, body) for one history request with this raw query string."""
        try:
            return 200, self._page(parse_qsl(query, keep_blank_values=True))
        except BadQuery as exc:
            return 400, {"error_code": "INVALID", "message": str(exc)}

    def _page(self, pairs: list[tuple[str, str]]) -> dict:
        single: dict[str, str] = {}
        wanted: dict[str, set[str]] = {}
        for key, value in pairs:
            if key in _NOT_SIMULATED:
                raise BadQuery(f"{key} is not simulated")
            if key in _SINGLE:
                if key in single:
                    raise BadQuery(f"{key} given more than once")
                single[key] = value
            elif key in _LISTS:
                wanted.setdefault(_LISTS[key], set()).add(value)
        order = single.get("order", "descending")
        if order not in ("ascending", "descending"):
            raise BadQuery("order must be ascending or descending")
        limit_text = single.get("limit", str(DEFAULT_LIMIT))
        if not re.fullmatch(r"[0-9]{1,4}", limit_text) or not 1 <= int(limit_text) <= MAX_LIMIT:
            raise BadQuery(f"limit must be an integer from 1 to {MAX_LIMIT}")
        limit = int(limit_text)
        since = parse_time(single["changes_since"]) if "changes_since" in single else None
        code = single.get("transaction_code")

        lo, hi = 0, len(self._keys)
        if "oldest_time" in single:  # at or after
            lo = max(lo, bisect.bisect_left(self._keys, (parse_time(single["oldest_time"]), -1)))
        if "newest_time" in single:  # before
            hi = min(hi, bisect.bisect_left(self._keys, (parse_time(single["newest_time"]), -1)))
        if "oldest_ref" in single:  # after that item
            lo = max(lo, bisect.bisect_right(self._keys, self._ref_key(single["oldest_ref"], "oldest_ref")))
        if "newest_ref" in single:  # before that item
            hi = min(hi, bisect.bisect_left(self._keys, self._ref_key(single["newest_ref"], "newest_ref")))

        found: list[_Entry] = []
        for i in range(lo, hi) if order == "ascending" else range(hi - 1, lo - 1, -1):
            entry = self._entries[self._keys[i][1]]
            if ((code is None or entry.item.get("transaction_code") == code)
                    and (since is None or entry.modified >= since)
                    and all(entry.item.get(field) in values for field, values in wanted.items())):
                found.append(entry)
                if len(found) > limit:  # one more than a page: there is a next page
                    break
        links = []
        if len(found) > limit:
            del found[limit:]
            cursor = "oldest_ref" if order == "ascending" else "newest_ref"
            href = urlencode([(k, v) for k, v in pairs if k != cursor] + [(cursor, found[-1].ref)])
            links.append({"rel": "next", "href": href})
        return {"items": [dict(e.item) for e in found], "links": links}

    def _ref_key(self, ref: str, name: str) -> tuple[_dt.datetime, int]:
        entry = self._by_ref.get(ref)
        if entry is None:
            raise BadQuery(f"{name} names no transaction")
        return entry.key


def mirror_checkout(ledger: HistoryLedger, checkout: dict) -> None:
    """Put a checkout's SUCCESSFUL transactions into its merchant's history, as ECOM payments, so a paid
    checkout is visible from both sides. Ones already there are left as they are (the history is
    changed through update_transaction). Checkout bodies in tests may be deliberately malformed:
    a transaction that is not plausible is not mirrored, and nothing here raises."""
    transactions = checkout.get("transactions")
    if not isinstance(transactions, list):
        return
    for txn in transactions:
        if not isinstance(txn, dict) or txn.get("status") != "SUCCESSFUL":
            continue
        code, tid = txn.get("transaction_code"), txn.get("id")
        amount, currency = txn.get("amount", checkout.get("amount")), txn.get("currency", checkout.get("currency"))
        if not (isinstance(code, str) and code and code not in ledger and isinstance(currency, str)
                and isinstance(amount, Decimal | int | float) and not isinstance(amount, bool)):
            continue
        amount = Decimal(str(amount))
        if not amount.is_finite():
            continue
        try:
            when = _dt.datetime.fromisoformat(txn["timestamp"])
        except (KeyError, TypeError, ValueError):
            when = None
        if when is None or when.utcoffset() is None:
            when = _dt.datetime.now(_dt.UTC)
        summary = checkout.get("description")
        item = history_item(id=tid if isinstance(tid, str) and tid else str(uuid.uuid4()), transaction_code=code,
                            amount=amount, currency=currency, status="SUCCESSFUL", payment_type="ECOM",
                            type="PAYMENT", timestamp=when,
                            product_summary=summary if isinstance(summary, str) else None)
        with contextlib.suppress(ValueError):  # its id is already another transaction's
            ledger.add(item, timestamp=when)

"""SumUp's transaction history, read page by page for reconciliation (no database, no HTTP of its own).

Every field of a history item is optional in SumUp's spec, so an item is parsed leniently: a field
that is missing, of the wrong type or out of range (payverify.sumup.body: an amount out of bounds, a
time without a zone or outside 2000..2100) becomes None and the rest of the item is kept. An item
whose fields cannot be taken at all (whatever those rules did not foresee) is skipped and handed to
the caller as a Skipped, never fatal to the page. The page itself must be what
the spec says (an object with an `items` list), else the history is unreadable: a reconciliation
must never take a page it did not understand for "no transactions".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from payverify.addresses import one_line
from payverify.errors import PayverifyError
from payverify.exitcodes import ExitStatus
from payverify.sumup import body
from payverify.sumup.body import NotJSON
from payverify.sumup.client import Reply, history_query


class HistoryUnreadable(PayverifyError):
    """The history could not be read to its end. `reason` is one line naming no body, token or URL."""

    exit_status = ExitStatus.SUMUP_UNAVAILABLE

    def __init__(self, reason: str, *, http_status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.http_status = http_status  # set when SumUp answered a status other than 200 (401: refresh)


@dataclass(frozen=True)
class HistoryItem:
    id: str | None
    transaction_code: str | None
    amount: Decimal | None
    currency: str | None
    status: str | None          # upper-cased; open enum (SUCCESSFUL, REFUNDED, CHARGE_BACK, ...)
    type: str | None            # PAYMENT, REFUND, CHARGE_BACK, ...
    payment_type: str | None    # ECOM, POS, CASH, ...: only ECOM can be a ticket order
    timestamp: datetime | None  # in UTC; None when absent, without a zone or out of range (body.py)
    refunded_amount: Decimal | None


@dataclass(frozen=True)
class Skipped:
    """An item whose fields could not be taken. Both fields are safe to log (one line, capped)."""

    transaction_code: str | None
    reason: str


class ItemUnreadable(ValueError):
    """parse_item's one transaction could not be taken."""

    def __init__(self, skipped: Skipped) -> None:
        super().__init__(skipped.reason)
        self.skipped = skipped


@dataclass(frozen=True)
class Page:
    items: list[HistoryItem]
    next_query: str | None  # the next link's href, as list_transactions(next_query=...) takes it
    skipped: tuple[Skipped, ...] = ()

# A backstop: body.py turns the values it knows to be unusable into None; anything else that taking
# an item's fields raises (OverflowError and decimal's InvalidOperation are ArithmeticErrors) skips
# that item, and the rest of the page is kept.
_UNTAKEABLE = (ValueError, TypeError, ArithmeticError)


def parse_page(text: str) -> Page:
    """One history page. Raises HistoryUnreadable unless it is an object with an `items` list."""
    try:
        data = body.loads(text)
    except NotJSON:
        raise HistoryUnreadable("the reply was not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise HistoryUnreadable("the reply was not a transaction list")
    items: list[HistoryItem] = []
    skipped: list[Skipped] = []
    for raw in data["items"]:
        try:
            items.append(_taken(raw))
        except ItemUnreadable as exc:
            skipped.append(exc.skipped)
    return Page(items=items, next_query=_next_href(data.get("links")), skipped=tuple(skipped))


def parse_item(text: str) -> HistoryItem:
    """One transaction as `GET /v2.1/merchants/{code}/transactions?transaction_code=` gives it
    (TransactionFull: the history item's fields and more)."""
    try:
        data = body.loads(text)
    except NotJSON:
        raise HistoryUnreadable("the reply was not JSON") from None
    if not isinstance(data, dict):
        raise HistoryUnreadable("the reply was not a transaction")
    return _taken(data)


def _taken(raw: Any) -> HistoryItem:
    """One item's fields, or ItemUnreadable naming (as far as it can) the transaction and why."""
    if not isinstance(raw, dict):
        raise ItemUnreadable(Skipped(None, "not an object"))
    try:
        return _item(raw)
    except _UNTAKEABLE as exc:
        code = raw.get("transaction_code")
        raise ItemUnreadable(Skipped(one_line(code, 64) if isinstance(code, str) else None,
                                     one_line(f"{type(exc).__name__}: {exc}", 160))) from None


def walk(fetch: Callable[[str | None], Reply], *, deadline: float,
         clock: Callable[[], float] = time.monotonic,
         on_skipped: Callable[[Skipped], None] = lambda _: None) -> Iterator[HistoryItem]:
    """Every item of the history, following next links: `fetch(None)` for the first page, then
    `fetch(next_query)`. One page is held at a time, however long the history. An item whose
    fields cannot be taken goes to `on_skipped` instead.

    Raises HistoryUnreadable on a reply other than 200, a page not understood, a next link that
    repeats the previous one, or when `clock()` has passed `deadline` before a further page.
    SumUpUnavailable from `fetch` (no reply at all) propagates unchanged.
    """
    query: str | None = None
    previous: str | None = None  # the previous next link's query, to notice a loop
    pages = 0
    while True:
        if pages and clock() > deadline:
            raise HistoryUnreadable(f"time budget spent after {pages} page{'' if pages == 1 else 's'}")
        reply = fetch(query)
        pages += 1
        if reply.status != 200:
            raise HistoryUnreadable(f"SumUp answered HTTP {reply.status}", http_status=reply.status)
        page = parse_page(reply.text)
        del reply  # a page's text can be a MiB: hold only the parsed page while yielding
        for skipped in page.skipped:
            on_skipped(skipped)
        yield from page.items
        if page.next_query is None:
            return
        current = history_query(page.next_query)  # parse_page has checked it has one
        if current == previous:
            raise HistoryUnreadable(f"the next link repeated the previous one after {pages} pages")
        previous, query = current, page.next_query
        del page


def merchant_code_of(me_text: str) -> str | None:
    """`merchant_profile.merchant_code` of a /v0.1/me body; None when absent or not a string."""
    try:
        data = body.loads(me_text)
    except NotJSON:
        return None
    profile = data.get("merchant_profile") if isinstance(data, dict) else None
    code = profile.get("merchant_code") if isinstance(profile, dict) else None
    return (code.strip() or None) if isinstance(code, str) else None


def _next_href(links: Any) -> str | None:
    # Links absent or malformed: no next page. A next link that is there but has no query cannot be
    # followed, and stopping there would pass a truncated history off as complete: unreadable.
    if not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, dict) and link.get("rel") == "next" and isinstance(link.get("href"), str):
            href: str = link["href"]
            try:
                history_query(href)
            except ValueError:
                raise HistoryUnreadable("the next link carries no query string") from None
            return href
    return None


def _item(data: dict[str, Any]) -> HistoryItem:
    return HistoryItem(
        id=_text(data.get("id")),
        transaction_code=_text(data.get("transaction_code")),
        amount=body.amount(data.get("amount")),
        currency=_upper(data.get("currency")),
        status=_upper(data.get("status")),
        type=_upper(data.get("type")),
        payment_type=_upper(data.get("payment_type")),
        timestamp=body.timestamp(data.get("timestamp")),
        refunded_amount=body.amount(data.get("refunded_amount")),
    )


def _text(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _upper(value: Any) -> str | None:
    text = _text(value)
    return text.upper() if text is not None else None

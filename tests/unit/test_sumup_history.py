"""SumUp's transaction history: the client's two requests (against `responses`), a page parsed leniently,
and the walk over pages (paging, loops, the time budget, bounded memory). No server, no process."""

from __future__ import annotations

import gc
import itertools
import json
import tracemalloc
import weakref
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
import tenacity

from payverify.errors import PayverifyError, SumUpUnavailable
from payverify.exitcodes import ExitStatus
from payverify.secret import Secret
from payverify.sumup import history
from payverify.sumup.client import Reply, SumUpClient, history_query
from payverify.sumup.history import HistoryItem, HistoryUnreadable, Page, merchant_code_of, parse_page, walk

BASE = "https://sumup.test"
CANARY = "sup_sk_CANARY123"
MERCHANT = "MH4H92C7"
PATH = f"/v2.1/merchants/{MERCHANT}/transactions/history"
HISTORY_URL = f"{BASE}{PATH}"


@pytest.fixture
def client():
    c = SumUpClient(BASE, wait=tenacity.wait_none(), sleep=lambda _: None)
    yield c
    c.close()


@pytest.fixture
def mock():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as m:
        yield m


def page_text(items: list[dict], next_href: str | None = None) -> str:
    links = [] if next_href is None else [{"rel": "next", "href": next_href}]
    return json.dumps({"items": items, "links": links})


# -- the client ------------------------------------------------------------------------------------


def test_get_me_sends_bearer_to_v01_me(client, mock):
    """get_me is GET /v0.1/me with the bearer token, and returns SumUp's reply as it came."""
    mock.get(f"{BASE}/v0.1/me", body='{"merchant_profile": {"merchant_code": "MH4H92C7"}}')
    reply = client.get_me(Secret(CANARY))
    assert reply == Reply(200, '{"merchant_profile": {"merchant_code": "MH4H92C7"}}')
    assert mock.calls[0].request.headers["Authorization"] == f"Bearer {CANARY}"


def test_list_transactions_first_page_url(client, mock):
    """Without params or a next link, the request is the bare history path of that merchant."""
    mock.get(HISTORY_URL, body=page_text([]))
    assert client.list_transactions(MERCHANT, Secret(CANARY)).status == 200
    assert mock.calls[0].request.path_url == PATH
    assert mock.calls[0].request.headers["Authorization"] == f"Bearer {CANARY}"


def test_hostile_merchant_code_is_quoted(client, mock):
    """A code with "/", "?" and "#" stays inside one path segment: it cannot change the path or query."""
    mock.get(f"{BASE}/v2.1/merchants/a%2F..%2Fb%3Fx%3D1%23f/transactions/history", body=page_text([]))
    client.list_transactions("a/../b?x=1#f", Secret(CANARY))
    assert mock.calls[0].request.path_url == "/v2.1/merchants/a%2F..%2Fb%3Fx%3D1%23f/transactions/history"


@pytest.mark.parametrize("bad_code", ["", ".", ".."])
def test_empty_or_dot_segment_merchant_code_refused(client, mock, bad_code):
    """An empty or dot-segment code would be normalised to another path: refused before any request."""
    with pytest.raises(ValueError):
        client.list_transactions(bad_code, Secret(CANARY))
    assert len(mock.calls) == 0


def test_list_params_become_repeated_keys(client, mock):
    """A list value repeats its key (statuses[]=SUCCESSFUL&statuses[]=REFUNDED); plain values are sent once."""
    mock.get(HISTORY_URL, body=page_text([]))
    client.list_transactions(MERCHANT, Secret(CANARY), params={
        "statuses[]": ["SUCCESSFUL", "REFUNDED"], "order": "ascending", "changes_since": "2026-08-20T10:00:00+00:00"})
    query = urlsplit(mock.calls[0].request.url).query
    assert parse_qs(query) == {"statuses[]": ["SUCCESSFUL", "REFUNDED"], "order": ["ascending"],
                               "changes_since": ["2026-08-20T10:00:00+00:00"]}
    assert query.count("statuses%5B%5D=") == 2


@pytest.mark.parametrize("href", [
    "limit=10&oldest_ref=abc&statuses%5B%5D=SUCCESSFUL",
    "?limit=10&oldest_ref=abc&statuses%5B%5D=SUCCESSFUL",
    f"{PATH}?limit=10&oldest_ref=abc&statuses%5B%5D=SUCCESSFUL",
    f"{HISTORY_URL}?limit=10&oldest_ref=abc&statuses%5B%5D=SUCCESSFUL",
    "limit=10&oldest_ref=abc&statuses%5B%5D=SUCCESSFUL#fragment",
])
def test_next_query_forms_request_that_query_on_our_path(client, mock, href):
    """A next link as a bare query, "?query", a path or a full URL: its query, verbatim, on the same path."""
    mock.get(HISTORY_URL, body=page_text([]))
    client.list_transactions(MERCHANT, Secret(CANARY), next_query=href)
    assert mock.calls[0].request.url == f"{HISTORY_URL}?limit=10&oldest_ref=abc&statuses%5B%5D=SUCCESSFUL"


@pytest.mark.parametrize("href", [
    "https://evil.test/steal?limit=10&cursor=x",
    "//evil.test/steal?limit=10&cursor=x",
    "http://sumup.test.evil.test/v2.1/merchants/OTHER/transactions/history?limit=10&cursor=x",
    "/v0.1/checkouts?limit=10&cursor=x",
    "/v2.1/merchants/OTHER/transactions/history?limit=10&cursor=x",
    "javascript:alert(1)?limit=10&cursor=x",
    "https://user:pass@evil.test:8443/a/b?limit=10&cursor=x",
])
def test_hostile_next_link_never_leaves_our_base_and_path(client, mock, href):
    """Whatever host or path a next link names, the token goes only to our base URL and history path."""
    mock.get(HISTORY_URL, body=page_text([]))
    assert client.list_transactions(MERCHANT, Secret(CANARY), next_query=href).status == 200
    (call,) = mock.calls
    assert call.request.url == f"{HISTORY_URL}?limit=10&cursor=x"


@pytest.mark.parametrize("href", ["javascript:alert(1)", "https://evil.test/steal", "//evil.test", "/v0.1/me",
                                  "", "?", "#limit=10", "  ", "?&&"])
def test_next_link_without_a_query_is_refused(client, mock, href):
    """A link with no query would re-request page one (or go elsewhere): refused before any request."""
    with pytest.raises(ValueError):
        client.list_transactions(MERCHANT, Secret(CANARY), next_query=href)
    assert len(mock.calls) == 0


def test_next_query_replaces_params(client, mock):
    """With a next link the first page's params are not added again: the link already carries the filters."""
    mock.get(HISTORY_URL, body=page_text([]))
    client.list_transactions(MERCHANT, Secret(CANARY), params={"statuses[]": ["SUCCESSFUL"], "limit": "5"},
                             next_query="limit=5&statuses%5B%5D=SUCCESSFUL&newest_ref=9")
    assert urlsplit(mock.calls[0].request.url).query == "limit=5&statuses%5B%5D=SUCCESSFUL&newest_ref=9"


def test_history_request_goes_through_the_retrying_transport(client, mock):
    """A 503 on the history route is retried like any other request; the page that follows is returned."""
    mock.get(HISTORY_URL, status=503)
    mock.get(HISTORY_URL, body=page_text([]))
    assert client.list_transactions(MERCHANT, Secret(CANARY)).status == 200
    assert len(mock.calls) == 2


def test_history_redirect_is_not_followed(client, mock):
    """A 3xx from the history route comes back as a reply: the bearer token never follows a Location."""
    mock.get(HISTORY_URL, status=302, headers={"Location": "https://evil.test/"})
    assert client.list_transactions(MERCHANT, Secret(CANARY)).status == 302
    assert len(mock.calls) == 1


def test_history_query_is_idempotent_on_a_query():
    """history_query of a bare query is that query, so a query taken from a link can be passed again."""
    assert history_query("limit=10&oldest_time=2026-08-20T10:00:00Z") == "limit=10&oldest_time=2026-08-20T10:00:00Z"
    assert history_query(history_query("https://x.test/p?a=1&b=2")) == "a=1&b=2"


# -- one page --------------------------------------------------------------------------------------

FULL = ('{"id": " 410fc44a ", "transaction_code": "TEENSK4W2K", "amount": 10.10, "currency": "gbp",'
        ' "status": "successful", "type": "payment", "payment_type": "ecom",'
        ' "timestamp": "2026-08-20T11:03:12.876+01:00", "refunded_amount": 0.1, "product_summary": "2 tickets",'
        ' "user": "artist@example.com", "installments_count": 1}')


def test_full_item_parsed_exactly():
    """Every field is read: money exactly as Decimal (10.10 stays 10.10), codes upper-cased, time in UTC."""
    page = parse_page(f'{{"items": [{FULL}], "links": []}}')
    (item,) = page.items
    assert item == HistoryItem(id="410fc44a", transaction_code="TEENSK4W2K", amount=Decimal("10.10"),
                               currency="GBP", status="SUCCESSFUL", type="PAYMENT", payment_type="ECOM",
                               timestamp=datetime(2026, 8, 20, 10, 3, 12, 876000, tzinfo=UTC),
                               refunded_amount=Decimal("0.1"))
    assert str(item.amount) == "10.10" and str(item.refunded_amount) == "0.1"
    assert item.timestamp is not None and item.timestamp.utcoffset().total_seconds() == 0
    assert page.next_query is None


def test_integer_amount_is_a_decimal():
    """An amount written as an integer (12) is Decimal 12, not an int."""
    (item,) = parse_page('{"items": [{"amount": 12, "refunded_amount": 0}]}').items
    assert isinstance(item.amount, Decimal) and item.amount == Decimal(12)
    assert isinstance(item.refunded_amount, Decimal) and item.refunded_amount == 0


def test_missing_fields_are_none():
    """An empty item (every field is optional in SumUp's spec) is all None, not an error."""
    (item,) = parse_page('{"items": [{}]}').items
    assert item == HistoryItem(None, None, None, None, None, None, None, None, None)


@pytest.mark.parametrize("field, value", [
    ("amount", "10.10"), ("amount", True), ("amount", None), ("amount", [1]), ("amount", 1e400),
    ("amount", 1e13), ("amount", 0.123456789), ("refunded_amount", "0.10"), ("refunded_amount", {}),
    ("status", 5), ("status", ""), ("status", "   "), ("type", ["PAYMENT"]), ("payment_type", False),
    ("currency", 826), ("id", 123), ("transaction_code", {"code": "X"}),
    ("timestamp", "yesterday"), ("timestamp", "2026-08-20T10:03:12"), ("timestamp", 1755684192),
])
def test_field_of_wrong_type_becomes_none(field, value):
    """A field with the wrong type (or an implausible amount, or a time without a zone) is None; the rest stays."""
    raw = {"transaction_code": "TX1", "amount": 5, "status": "SUCCESSFUL", "timestamp": "2026-08-20T10:00:00Z",
           field: value}
    (item,) = parse_page(json.dumps({"items": [raw]})).items
    assert getattr(item, field) is None
    kept = {"transaction_code": "TX1", "amount": Decimal(5), "status": "SUCCESSFUL",
            "timestamp": datetime(2026, 8, 20, 10, tzinfo=UTC)}
    for name, expected in kept.items():
        if name != field:
            assert getattr(item, name) == expected


def test_strings_stripped_and_only_enums_upper_cased():
    """Strings are stripped; status, type, payment type and currency are upper-cased, codes and ids are not."""
    raw = {"id": " abc-Def ", "transaction_code": " Tx9 ", "status": " charge_back ", "type": "Refund",
           "payment_type": " pos", "currency": "eur "}
    (item,) = parse_page(json.dumps({"items": [raw]})).items
    assert (item.id, item.transaction_code) == ("abc-Def", "Tx9")
    assert (item.status, item.type, item.payment_type, item.currency) == ("CHARGE_BACK", "REFUND", "POS", "EUR")


def test_item_that_is_not_an_object_is_skipped():
    """A non-object in items is skipped; the objects around it are kept, in order."""
    page = parse_page('{"items": [{"transaction_code": "A"}, 5, "x", null, [], {"transaction_code": "B"}]}')
    assert [i.transaction_code for i in page.items] == ["A", "B"]


@pytest.mark.parametrize("text, reason", [
    ("<html>Bad gateway CANARY-BODY</html>", "the reply was not JSON"),
    ("", "the reply was not JSON"),
    ('{"items": [', "the reply was not JSON"),
    ("[" * 100000, "the reply was not JSON"),
    ('["CANARY-BODY"]', "the reply was not a transaction list"),
    ('"CANARY-BODY"', "the reply was not a transaction list"),
    ('{"links": [], "note": "CANARY-BODY"}', "the reply was not a transaction list"),
    ('{"items": {"a": "CANARY-BODY"}}', "the reply was not a transaction list"),
    ('{"items": null}', "the reply was not a transaction list"),
])
def test_page_not_understood_is_unreadable(text, reason):
    """A body that is not an object with an items list is unreadable, with a reason that quotes no body."""
    with pytest.raises(HistoryUnreadable) as caught:
        parse_page(text)
    assert caught.value.reason == reason == str(caught.value)
    assert "CANARY" not in repr(caught.value) and caught.value.__cause__ is None


@pytest.mark.parametrize("links", [
    None, "next", 5, {"rel": "next", "href": "a=1"}, [5, "next"], [{"rel": "prev", "href": "a=1"}],
    [{"rel": "next"}], [{"rel": "next", "href": 5}], [{"rel": "NEXT-ish", "href": "a=1"}], [{"href": "a=1"}],
])
def test_absent_or_malformed_links_mean_no_next_page(links):
    """links absent, not a list, or without a usable rel=next item: the page is the last one."""
    body = {"items": []} if links is None else {"items": [], "links": links}
    assert parse_page(json.dumps(body)).next_query is None


def test_next_link_found_among_others():
    """The next link's href is kept as given, whatever other links come before it."""
    body = {"items": [], "links": [5, {"rel": "prev", "href": "p=1"}, {"rel": "next", "href": "?limit=10&c=2"}]}
    assert parse_page(json.dumps(body)) == Page(items=[], next_query="?limit=10&c=2")


@pytest.mark.parametrize("href", ["javascript:alert(1)", "https://evil.test/", "", "?"])
def test_next_link_without_query_is_unreadable(href):
    """A next link that cannot be followed is unreadable: stopping there would hide the rest of the history."""
    with pytest.raises(HistoryUnreadable, match="no query string"):
        parse_page(page_text([], href))


@pytest.mark.parametrize("text, expected", [
    ('{"merchant_profile": {"merchant_code": " MH4H92C7 "}, "account": {"type": "normal"}}', "MH4H92C7"),
    ('{"merchant_profile": {"merchant_code": 5}}', None),
    ('{"merchant_profile": {"merchant_code": ""}}', None),
    ('{"merchant_profile": {}}', None),
    ('{"merchant_profile": "MH4H92C7"}', None),
    ('{"merchant_code": "MH4H92C7"}', None),
    ('["MH4H92C7"]', None),
    ("<html>MH4H92C7</html>", None),
    ("", None),
])
def test_merchant_code_of_me(text, expected):
    """merchant_profile.merchant_code of a /v0.1/me body, stripped; None for anything else."""
    assert merchant_code_of(text) == expected


def test_history_unreadable_is_a_payverify_error():
    """HistoryUnreadable is one of payverify's errors, exiting as "SumUp could not be asked"."""
    err = HistoryUnreadable("SumUp answered HTTP 401", http_status=401)
    assert isinstance(err, PayverifyError) and err.exit_status == ExitStatus.SUMUP_UNAVAILABLE
    assert (err.reason, err.http_status) == ("SumUp answered HTTP 401", 401)


# -- the walk --------------------------------------------------------------------------------------


class Pages:
    """A fetch serving pages by number ("page=N"), built on demand; it records each query asked."""

    def __init__(self, count: int, per_page: int = 2, *, pad: int = 0) -> None:
        self.count, self.per_page, self.pad = count, per_page, pad
        self.queries: list[str | None] = []

    def __call__(self, query: str | None) -> Reply:
        self.queries.append(query)
        n = 1 if query is None else int(parse_qs(history_query(query))["page"][0])
        items = [{"transaction_code": f"T{n}-{i}", "amount": 1.5, "product_summary": "x" * self.pad}
                 for i in range(self.per_page)]
        return Reply(200, page_text(items, f"limit=10&page={n + 1}" if n < self.count else None))


def codes(items) -> list[str | None]:
    return [i.transaction_code for i in items]


def test_walk_follows_next_links_to_the_end():
    """The first page is fetched with None, each further one with the previous next link; no link, no more."""
    fetch = Pages(3)
    assert codes(walk(fetch, deadline=float("inf"))) == ["T1-0", "T1-1", "T2-0", "T2-1", "T3-0", "T3-1"]
    assert fetch.queries == [None, "limit=10&page=2", "limit=10&page=3"]


def test_walk_is_lazy():
    """Nothing is fetched until items are asked for, and the next page only once this page's items are taken."""
    fetch = Pages(3)
    items = walk(fetch, deadline=float("inf"))
    assert fetch.queries == []
    assert codes(itertools.islice(items, 2)) == ["T1-0", "T1-1"]
    assert len(fetch.queries) == 1
    next(items)
    assert len(fetch.queries) == 2


def test_walk_of_an_empty_history():
    """One empty last page: no items, one fetch."""
    fetch = Pages(1, per_page=0)
    assert list(walk(fetch, deadline=float("inf"))) == [] and fetch.queries == [None]


@pytest.mark.parametrize("second_href", ["limit=10&page=2", "?limit=10&page=2", f"{HISTORY_URL}?limit=10&page=2"])
def test_walk_detects_a_next_link_repeating_the_previous_one(second_href):
    """A page whose next link is the one just followed (in any spelling) is a loop: unreadable, not endless."""
    replies = iter([Reply(200, page_text([{"transaction_code": "A"}], "limit=10&page=2")),
                    Reply(200, page_text([{"transaction_code": "B"}], second_href))])
    seen = []
    with pytest.raises(HistoryUnreadable, match="repeated the previous one after 2 pages"):
        seen.extend(walk(lambda _q: next(replies), deadline=float("inf")))
    assert codes(seen) == ["A", "B"]


def test_walk_stops_when_the_time_budget_is_spent():
    """Once clock() passes the deadline no further page is fetched, and the reason says how far it got."""
    fetch, now = Pages(10), [0.0]

    def clock() -> float:
        return now[0]

    seen = []
    with pytest.raises(HistoryUnreadable) as caught:
        for item in walk(fetch, deadline=2.5, clock=clock):
            seen.append(item)
            now[0] += 0.5  # two items per page: one second per page
    assert caught.value.reason == "time budget spent after 3 pages"
    assert len(fetch.queries) == 3 and len(seen) == 6


def test_walk_fetches_the_first_page_even_at_the_deadline():
    """The budget is checked before each further page: a walk started on time reads at least one page."""
    fetch = Pages(2)
    with pytest.raises(HistoryUnreadable, match=r"after 1 page$"):
        list(walk(fetch, deadline=0.0, clock=lambda: 1.0))
    assert fetch.queries == [None]


@pytest.mark.parametrize("status", [401, 403, 404, 400, 302, 503])
def test_walk_non_200_is_unreadable_naming_the_status(status):
    """Any reply other than 200 ends the walk as unreadable; the reason names the status, not the body."""
    replies = iter([Reply(200, page_text([{"transaction_code": "A"}], "page=2")), Reply(status, "CANARY-BODY")])
    seen = []
    with pytest.raises(HistoryUnreadable) as caught:
        seen.extend(walk(lambda _q: next(replies), deadline=float("inf")))
    assert caught.value.reason == f"SumUp answered HTTP {status}" and caught.value.http_status == status
    assert "CANARY" not in repr(caught.value) and codes(seen) == ["A"]


def test_walk_unparseable_page_is_unreadable():
    """A page that is not a transaction list, after good ones, ends the walk as unreadable."""
    replies = iter([Reply(200, page_text([{"transaction_code": "A"}], "page=2")), Reply(200, "<html></html>")])
    with pytest.raises(HistoryUnreadable, match="not JSON"):
        list(walk(lambda _q: next(replies), deadline=float("inf")))


def test_walk_lets_sumup_unavailable_through_unchanged():
    """No reply at all (the client's SumUpUnavailable) is not rewrapped: the caller sees the same error."""
    failure = SumUpUnavailable("timed out after 3 attempts", failure="timeout")

    def fetch(query: str | None) -> Reply:
        if query is None:
            return Reply(200, page_text([{"transaction_code": "A"}], "page=2"))
        raise failure

    with pytest.raises(SumUpUnavailable) as caught:
        list(walk(fetch, deadline=float("inf")))
    assert caught.value is failure


def test_walk_holds_one_page_at_a_time(monkeypatch):
    """Over 2,000 pages, no earlier page is still alive when the next one is fetched."""
    live = [0]  # pages parsed and not yet freed
    real_parse = history.parse_page

    def freed() -> None:
        live[0] -= 1

    def tracked(text: str) -> Page:
        page = real_parse(text)
        live[0] += 1
        weakref.finalize(page, freed)
        return page

    monkeypatch.setattr(history, "parse_page", tracked)
    pages = Pages(2000, per_page=3)
    alive_at_fetch: list[int] = []

    def fetch(query: str | None) -> Reply:
        alive_at_fetch.append(live[0])
        return pages(query)

    gc.disable()  # reference counting alone must free a page: no cycle collection to hide a leak
    try:
        count = sum(1 for _ in walk(fetch, deadline=float("inf")))
    finally:
        gc.enable()
    assert count == 6000 and len(alive_at_fetch) == 2000
    assert max(alive_at_fetch) == 0


def test_walk_memory_stays_flat_over_many_pages():
    """2,000 pages of ~10 kB (20 MB in all) are walked with well under 1 MB allocated at the peak."""
    fetch = Pages(2000, per_page=2, pad=5000)
    tracemalloc.start()
    try:
        count = sum(1 for _ in walk(fetch, deadline=float("inf")))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 4000
    assert peak < 1_000_000, peak


def test_walk_over_the_client(client, mock):
    """walk with list_transactions as fetch: page two is asked with the first page's link, on our path."""
    mock.get(HISTORY_URL, body=page_text([{"transaction_code": "A"}], "limit=1&statuses%5B%5D=SUCCESSFUL&c=2"),
             match=[responses.matchers.query_string_matcher("limit=1&statuses%5B%5D=SUCCESSFUL")])
    mock.get(HISTORY_URL, body=page_text([{"transaction_code": "B"}]),
             match=[responses.matchers.query_string_matcher("limit=1&statuses%5B%5D=SUCCESSFUL&c=2")])
    params: dict[str, str | list[str]] = {"limit": "1", "statuses[]": ["SUCCESSFUL"]}

    def fetch(query: str | None) -> Reply:
        return client.list_transactions(MERCHANT, Secret(CANARY), params=params, next_query=query)

    assert codes(walk(fetch, deadline=float("inf"))) == ["A", "B"]
    assert [c.request.path_url for c in mock.calls] == [f"{PATH}?limit=1&statuses%5B%5D=SUCCESSFUL",
                                                        f"{PATH}?limit=1&statuses%5B%5D=SUCCESSFUL&c=2"]

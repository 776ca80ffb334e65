"""The SumUp simulator's transaction history and /v0.1/me: paging, filters, changes_since, auth, faults, scale,
and payverify's own client and walk against it."""
from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from urllib.parse import parse_qs

import pytest
import requests
import tenacity

from payverify.secret import Secret
from payverify.sumup.client import SumUpClient
from payverify.sumup.history import HistoryUnreadable, merchant_code_of, walk
from payverify_dev.sumup_server import Scripted, checkout_body
from tests.integration.conftest import KEY, MERCHANT, OTHER, OTHER_KEY  # the `fake` simulator's accounts

HISTORY = f"/v2.1/merchants/{MERCHANT}/transactions/history"
T0 = dt.datetime(2026, 8, 20, 10, 0, tzinfo=dt.UTC)


def history(http, fake, query: str | dict | None = None, *, token=KEY, merchant=MERCHANT) -> requests.Response:
    path = f"/v2.1/merchants/{merchant}/transactions/history"
    if isinstance(query, str):
        path, query = f"{path}?{query}", None
    return http.get(f"{fake.url}{path}", params=query, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def seed(fake, count: int, merchant: str = MERCHANT, **kw) -> list[str]:
    """`count` transactions a minute apart from T0, codes T000, T001, ... in time order."""
    codes = [f"T{i:03d}" for i in range(count)]
    for i, code in enumerate(codes):
        fake.add_transaction(merchant, transaction_code=code, amount="1.10",
                             timestamp=T0 + dt.timedelta(minutes=i), **kw)
    return codes


def all_pages(http, fake, query) -> list[dict]:
    """Every page of one listing, following next links; each page's body."""
    pages = [history(http, fake, query).json()]
    while nxt := [link["href"] for link in pages[-1]["links"] if link["rel"] == "next"]:
        r = history(http, fake, nxt[0])
        assert r.status_code == 200, r.text
        pages.append(r.json())
    return pages


def item_codes(pages) -> list[str]:
    return [item["transaction_code"] for page in pages for item in page["items"]]


def test_paging_follows_next_links_newest_first(fake, http):
    """25 transactions at limit 10: pages of 10, 10 and 5, newest first, each once; the last has no next link."""
    codes = seed(fake, 25)
    pages = all_pages(http, fake, {"limit": "10"})
    assert [len(p["items"]) for p in pages] == [10, 10, 5]
    assert item_codes(pages) == codes[::-1]
    assert pages[-1]["links"] == [] and all(len(p["links"]) == 1 for p in pages[:-1])
    assert len(fake.history_requests(MERCHANT)) == 3


def test_ascending_order(fake, http):
    """order=ascending pages oldest first; its cursor is oldest_ref."""
    codes = seed(fake, 7)
    pages = all_pages(http, fake, {"order": "ascending", "limit": "3"})
    assert item_codes(pages) == codes
    assert "oldest_ref" in parse_qs(pages[0]["links"][0]["href"])


def test_defaults_are_descending_and_ten(fake, http):
    """Without parameters: the ten newest, newest first, and a next link to the rest."""
    codes = seed(fake, 12)
    body = history(http, fake).json()
    assert [i["transaction_code"] for i in body["items"]] == codes[::-1][:10]
    assert [link["rel"] for link in body["links"]] == ["next"]


def test_next_link_carries_the_filters_and_a_cursor(fake, http):
    """The next link's query is the request's own (filters, order, limit) plus newest_ref, the page's last id."""
    seed(fake, 5)
    fake.add_transaction(MERCHANT, transaction_code="POS1", amount="3", payment_type="POS", timestamp=T0)
    body = history(http, fake, {"limit": "2", "statuses[]": ["SUCCESSFUL", "REFUNDED"],
                                "payment_types[]": "ECOM"}).json()
    query = parse_qs(body["links"][0]["href"])
    assert query["statuses[]"] == ["SUCCESSFUL", "REFUNDED"] and query["payment_types[]"] == ["ECOM"]
    assert query["limit"] == ["2"] and query["newest_ref"] == [body["items"][-1]["id"]]
    pages = all_pages(http, fake, {"limit": "2", "payment_types[]": "ECOM"})
    assert item_codes(pages) == ["T004", "T003", "T002", "T001", "T000"]


def test_amounts_served_exactly(fake, http):
    """An amount of 10.10 is served as the JSON number 10.10, read back exactly as Decimal."""
    fake.add_transaction(MERCHANT, transaction_code="T1", amount=Decimal("10.10"), refunded_amount="0.10")
    r = history(http, fake)
    assert '"amount": 10.10' in r.text and '"refunded_amount": 0.10' in r.text


def test_changes_since_finds_a_later_refund_and_chargeback(fake, http):
    """Back-dated transactions are not "changed since now"; refunded or charged back later, they are."""
    seed(fake, 5)
    since = dt.datetime.now(dt.UTC)
    assert history(http, fake, {"changes_since": since.isoformat()}).json()["items"] == []
    fake.update_transaction(MERCHANT, "T001", status="REFUNDED", refunded_amount=Decimal("1.10"))
    fake.update_transaction(MERCHANT, "T003", status="CHARGE_BACK")
    fake.add_transaction(MERCHANT, transaction_code="TNEW", amount="4")
    items = history(http, fake, {"changes_since": since.isoformat()}).json()["items"]
    assert [(i["transaction_code"], i["status"]) for i in items] == [
        ("TNEW", "SUCCESSFUL"), ("T003", "CHARGE_BACK"), ("T001", "REFUNDED")]
    assert history(http, fake, {"changes_since": since.isoformat()}).text.count('"refunded_amount": 1.10') == 1
    before_all = (T0 - dt.timedelta(days=1)).isoformat()
    assert len(history(http, fake, {"changes_since": before_all, "limit": "100"}).json()["items"]) == 6


def test_filters(fake, http):
    """statuses[], payment_types[], types[], transaction_code, oldest_time (at or after) and newest_time (before)."""
    seed(fake, 4)  # T000..T003 at T0 + 0..3 minutes
    fake.add_transaction(MERCHANT, transaction_code="FAIL", amount="1", status="FAILED", timestamp=T0)
    fake.add_transaction(MERCHANT, transaction_code="CASH", amount="2", payment_type="CASH", timestamp=T0)
    fake.add_transaction(MERCHANT, transaction_code="RFND", amount="1", type="REFUND", timestamp=T0)

    def codes(query) -> set[str]:
        return {i["transaction_code"] for i in history(http, fake, {"limit": "100", **query}).json()["items"]}

    assert codes({"statuses[]": "FAILED"}) == {"FAIL"}
    assert codes({"statuses[]": ["FAILED", "SUCCESSFUL"], "payment_types[]": "CASH"}) == {"CASH"}
    assert codes({"types[]": "REFUND"}) == {"RFND"}
    assert codes({"transaction_code": "T002"}) == {"T002"}
    window = {"oldest_time": (T0 + dt.timedelta(minutes=1)).isoformat(),
              "newest_time": (T0 + dt.timedelta(minutes=3)).isoformat()}
    assert codes(window) == {"T001", "T002"}
    assert codes({"oldest_time": "2026-08-20T10:03:00Z"}) == {"T003"}
    assert codes({"statuses[]": "PENDING"}) == set()


def test_history_of_another_merchant_is_401(fake, http):
    """A key may read only its own merchant's history: another merchant's, or an unknown token, is 401."""
    seed(fake, 2)
    assert history(http, fake, token=OTHER_KEY).status_code == 401
    assert history(http, fake, token="nope").status_code == 401
    assert history(http, fake, token=KEY, merchant=OTHER).status_code == 401
    assert history(http, fake, token=OTHER_KEY, merchant=OTHER).json() == {"items": [], "links": []}


def test_oauth_access_token_reads_its_merchants_history(fake, http):
    """An artist's access token reads that artist's history; once expired, 401."""
    fake.add_access_token("at-1", MERCHANT)
    seed(fake, 1)
    assert history(http, fake, token="at-1").status_code == 200
    fake.expire_access_token("at-1")
    assert history(http, fake, token="at-1").status_code == 401


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=-1", "limit=", "limit=1.5", "order=newest",
                                   "oldest_time=2026-13-01", "newest_time=soon", "changes_since=yesterday",
                                   "oldest_ref=unknown", "limit=5&limit=6", "users[]=a@example.com"])
def test_bad_parameters_are_400(fake, http, query):
    """A bad limit, order, time, cursor or repeated parameter is refused with 400 and an Error body."""
    r = history(http, fake, query)
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID" and r.json()["message"]


def test_limit_100_is_accepted(fake, http):
    """limit=100 is the largest page."""
    seed(fake, 101)
    body = history(http, fake, "limit=100").json()
    assert len(body["items"]) == 100 and body["links"]


def test_faults_scripted_per_merchant(fake, http):
    """script_history answers one merchant's history route, one reply per request, then paging resumes;
    another merchant's route and the checkout routes are untouched."""
    seed(fake, 3)
    fake.script_history(MERCHANT, Scripted(503), Scripted(429, headers={"Retry-After": "1"}),
                        Scripted(200, body="<html>gateway</html>"), Scripted(reset=True))
    assert history(http, fake, token=OTHER_KEY, merchant=OTHER).status_code == 200
    first, second, third = (history(http, fake) for _ in range(3))
    assert (first.status_code, second.status_code, second.headers["Retry-After"]) == (503, 429, "1")
    assert third.status_code == 200 and third.text.startswith("<html>")
    with pytest.raises(requests.ConnectionError):
        history(http, fake)
    assert len(history(http, fake).json()["items"]) == 3
    assert [r.status for r in fake.history_requests(MERCHANT)] == [503, 429, 200, None, 200]
    assert len(fake.history_requests(OTHER)) == 1 and len(fake.history_requests()) == 6


def test_scripted_delay_then_normal_page(fake, http):
    """A scripted 200 without a body is a normal page after its delay; longer than the read timeout, a timeout."""
    seed(fake, 1)
    fake.script_history(MERCHANT, Scripted(delay=2.0))
    with pytest.raises(requests.Timeout):
        http.get(f"{fake.url}{HISTORY}", headers={"Authorization": f"Bearer {KEY}"}, timeout=0.3)
    assert len(history(http, fake).json()["items"]) == 1


def test_global_fault_covers_history_and_me(fake, http):
    """A global fault answers the history route and /v0.1/me too, until cleared."""
    fake.set_global_fault(Scripted(503))
    assert history(http, fake).status_code == 503
    assert http.get(f"{fake.url}/v0.1/me", headers={"Authorization": f"Bearer {KEY}"}).status_code == 503
    fake.set_global_fault(None)
    assert history(http, fake).status_code == 200


def test_paid_checkout_is_in_the_history(fake, http):
    """A PAID checkout's SUCCESSFUL transaction appears in its merchant's history as an ECOM payment with the
    same code, amount, currency and timestamp; a FAILED or PENDING checkout adds nothing."""
    paid = checkout_body("c1", "JE-1", Decimal("10.10"), "EUR", MERCHANT, "PAID")
    fake.add_checkout(paid)
    fake.add_checkout(checkout_body("c2", "JE-2", "5", "EUR", MERCHANT, "FAILED"))
    fake.add_checkout(checkout_body("c3", "JE-3", "5", "EUR", MERCHANT, "PENDING"))
    (txn,) = paid["transactions"]
    (item,) = history(http, fake).json()["items"]
    assert (item["transaction_code"], item["id"], item["currency"], item["timestamp"]) == (
        txn["transaction_code"], txn["id"], "EUR", txn["timestamp"])
    assert (item["status"], item["payment_type"], item["type"]) == ("SUCCESSFUL", "ECOM", "PAYMENT")
    assert '"amount": 10.10' in history(http, fake).text
    assert history(http, fake, token=OTHER_KEY, merchant=OTHER).json()["items"] == []


def test_checkout_paid_later_enters_the_history(fake, http):
    """A PENDING checkout updated to PAID (as tests of the watch do) enters the history then, once."""
    fake.add_checkout(checkout_body("c1", "JE-1", "25.0", "GBP", MERCHANT, "PENDING"))
    assert history(http, fake).json()["items"] == []
    fake.update_checkout("c1", **checkout_body("c1", "JE-1", "25.0", "GBP", MERCHANT, "PAID"))
    fake.update_checkout("c1", description="again")
    assert [i["transaction_code"] for i in history(http, fake).json()["items"]] == [
        fake.get_checkout("c1")["transaction_code"]]


def test_checkout_owner_gets_the_history(fake, http):
    """A checkout added for an owner other than its body's merchant_code is in the owner's history."""
    fake.add_checkout(checkout_body("c1", "JE-1", "25.0", "GBP", MERCHANT, "PAID"), owner=OTHER)
    assert history(http, fake).json()["items"] == []
    assert len(history(http, fake, token=OTHER_KEY, merchant=OTHER).json()["items"]) == 1


def test_helpers_refuse_what_would_corrupt_the_history(fake):
    """A duplicate code, a naive timestamp, an unknown transaction or a changed code is refused."""
    fake.add_transaction(MERCHANT, transaction_code="T1", amount="1")
    with pytest.raises(ValueError):
        fake.add_transaction(MERCHANT, transaction_code="T1", amount="1")
    with pytest.raises(ValueError):
        fake.add_transaction(MERCHANT, transaction_code="T2", amount="1", timestamp=dt.datetime(2026, 8, 20))
    with pytest.raises(KeyError):
        fake.update_transaction(MERCHANT, "NOPE", status="REFUNDED")
    with pytest.raises(ValueError):
        fake.update_transaction(MERCHANT, "T1", transaction_code="T9")
    assert fake.get_transaction(MERCHANT, "T1")["amount"] == Decimal("1")


def test_update_timestamp_moves_the_item(fake, http):
    """An updated timestamp moves the item in the order (and in time filters)."""
    seed(fake, 3)
    fake.update_transaction(MERCHANT, "T000", timestamp=T0 + dt.timedelta(hours=1))
    assert [i["transaction_code"] for i in history(http, fake).json()["items"]] == ["T000", "T002", "T001"]


def test_me_names_the_tokens_merchant(fake, http):
    """/v0.1/me names the merchant an API key or access token acts for; an unknown token gets 401."""
    fake.add_access_token("at-1", OTHER)
    for token, merchant in ((KEY, MERCHANT), ("at-1", OTHER)):
        r = http.get(f"{fake.url}/v0.1/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["merchant_profile"]["merchant_code"] == merchant
    r = http.get(f"{fake.url}/v0.1/me", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["status"] == 401


# -- payverify's client and walk against the simulator ---------------------------------------------


@pytest.fixture
def client(fake):
    c = SumUpClient(fake.url, wait=tenacity.wait_none(), sleep=lambda _: None)
    yield c
    c.close()


def test_walk_over_the_simulator(fake, client):
    """get_me finds the merchant; walk with list_transactions reads every filtered item across pages."""
    codes = seed(fake, 23)
    fake.add_transaction(MERCHANT, transaction_code="POS1", amount="3", payment_type="POS")
    merchant = merchant_code_of(client.get_me(Secret(KEY)).text)
    assert merchant == MERCHANT
    params: dict[str, str | list[str]] = {"limit": "5", "payment_types[]": ["ECOM"], "order": "ascending"}

    def fetch(query):
        return client.list_transactions(merchant, Secret(KEY), params=params, next_query=query)

    items = list(walk(fetch, deadline=time.monotonic() + 30))
    assert [i.transaction_code for i in items] == codes
    assert all(i.amount == Decimal("1.10") and i.payment_type == "ECOM" for i in items)
    assert len(fake.history_requests(MERCHANT)) == 5


def test_walk_over_a_failing_page(fake, client):
    """A 401 on the second page ends the walk as unreadable, naming the status."""
    seed(fake, 4)
    fake.script_history(MERCHANT, Scripted(200), Scripted(401, body={"type": "about:blank", "status": 401}))

    def fetch(query):
        return client.list_transactions(MERCHANT, Secret(KEY), params={"limit": "2"}, next_query=query)

    with pytest.raises(HistoryUnreadable) as caught:
        list(walk(fetch, deadline=time.monotonic() + 30))
    assert caught.value.reason == "SumUp answered HTTP 401" and caught.value.http_status == 401


def test_ten_thousand_transactions_at_limit_100(fake, client):
    """10,000 transactions are cheap to add and are paged through at limit 100 in 100 requests, each once."""
    started = time.monotonic()
    for i in range(10_000):
        fake.add_transaction(MERCHANT, transaction_code=f"T{i:05d}", amount="2.50",
                             timestamp=T0 + dt.timedelta(seconds=i))
    added = time.monotonic() - started

    def fetch(query):
        return client.list_transactions(MERCHANT, Secret(KEY), params={"limit": "100"}, next_query=query)

    started = time.monotonic()
    seen = [item.transaction_code for item in walk(fetch, deadline=time.monotonic() + 120)]
    paged = time.monotonic() - started
    assert len(seen) == 10_000 and len(set(seen)) == 10_000 and seen[0] == "T09999" and seen[-1] == "T00000"
    assert len(fake.history_requests(MERCHANT)) == 100
    assert added < 10 and paged < 30, (added, paged)

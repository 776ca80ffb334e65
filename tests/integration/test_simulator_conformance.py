"""The simulator's bodies against the `sumup` SDK's pydantic models (generated from SumUp's OpenAPI
document), and payverify's parsing of bodies built from those models.

Models, per body kind (as the SDK's `checkouts` resource reads each reply):
- GET /v0.1/checkouts/{id}, 200:               sumup.types.CheckoutSuccess
  (its transactions: sumup.types.CheckoutSuccessTransaction)
- GET /v0.1/checkouts?checkout_reference=, 200: sumup.checkouts.resource.ListCheckouts200Response
  (= list[CheckoutSuccess])
- 401 on either checkout route:                sumup.types.Problem (RFC 9457)
- 404 on GET /v0.1/checkouts/{id}:             sumup.types.Error
- GET /v2.1/merchants/{code}/transactions/history, 200:
                                               sumup.transactions.resource.ListTransactionsV21200Response
  (its items: sumup.types.TransactionHistory; its links: sumup.types.TransactionsHistoryLink)
- 400 on the history route:                    sumup.types.Error; 401 there: sumup.types.Problem
- GET /v0.1/me, 200:                           no model: the `sumup` 0.4.0 package has no /v0.1/me.
  Checked against the fields of the legacy MerchantAccount as SumUp's Go SDK (sumup/sumup-go,
  merchant/merchant.go) still generates it; its 401 against sumup.types.Problem.
- POST /token (OAuth refresh):                 no model. The SDK's sumup.types.Token belongs to its
  merchant-token endpoint (no refresh token, 15-minute lifetime), not to OAuth: those bodies are
  checked against SUMUP.md's description (success) and RFC 6749 section 5.2 (errors) instead.
"""

from __future__ import annotations

import datetime as dt
import json
import types
import typing
from decimal import Decimal

import pydantic
import pytest
import requests
from sumup.checkouts.resource import ListCheckouts200Response
from sumup.transactions.resource import ListTransactionsV21200Response
from sumup.types import (
    CheckoutSuccess,
    CheckoutSuccessTransaction,
    Error,
    Problem,
    TransactionHistory,
    TransactionsHistoryLink,
)

from payverify.sumup.answer import AnswerKind, answer_from_reply
from payverify.sumup.history import merchant_code_of, parse_page
from payverify_dev.sumup_server import FakeSumUp, checkout_body
from tests.integration.conftest import KEY, MERCHANT, OTHER, OTHER_KEY  # the `fake` simulator's accounts

CID = "4e425463-3e1b-431d-83fa-1e51c2925e99"
REF = "JE-7F3K2Q"


# -- a strict checker -------------------------------------------------------------------------------


def _literals(annotation) -> set[str]:
    """The documented values of an open enum such as `Literal["PAID", ...] | str`."""
    return {v for arm in typing.get_args(annotation) if typing.get_origin(arm) is typing.Literal
            for v in typing.get_args(arm)}


def _walk(annotation, value, path: str, problems: list[str]) -> None:
    # Model fields are `X | None`: look at each arm that could describe the value.
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        documented = _literals(annotation)
        if documented and isinstance(value, str) and value not in documented:
            problems.append(f"{path}: {value!r} is not a documented value {sorted(documented)}")
        for arm in typing.get_args(annotation):
            if typing.get_origin(arm) is not typing.Literal:
                _walk(arm, value, path, problems)
    elif origin is list and isinstance(value, list):
        (item,) = typing.get_args(annotation)
        for i, element in enumerate(value):
            _walk(item, element, f"{path}[{i}]", problems)
    elif isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel) and isinstance(value, dict):
        # Strict even where the model allows extra keys (Problem): the simulator sends only named ones.
        fields = {f.alias or name: f for name, f in annotation.model_fields.items()}
        for key, child in value.items():
            if key not in fields:
                problems.append(f"{path}.{key}: not a field of {annotation.__name__}")
            else:
                _walk(fields[key].annotation, child, f"{path}.{key}", problems)


def conformance_problems(annotation, text: str) -> list[str]:
    """Everything in the JSON `text` that the SDK type `annotation` does not describe."""
    adapter = pydantic.TypeAdapter(annotation)
    problems = []
    for how, validate in (("as the SDK reads it", lambda: adapter.validate_python(json.loads(text))),
                          # lax validation turns "25.00" into 25.0: strict JSON mode keeps types honest
                          ("with exact JSON types", lambda: adapter.validate_json(text, strict=True))):
        try:
            validate()
        except pydantic.ValidationError as exc:
            problems.append(f"invalid {how}: {exc}")
    _walk(annotation, json.loads(text), "$", problems)
    return problems


def assert_conforms(annotation, text: str) -> None:
    assert conformance_problems(annotation, text) == []


# -- the checker itself -----------------------------------------------------------------------------

SDK_PAID = CheckoutSuccess(
    id=CID, checkout_reference=REF, amount=25.0, currency="GBP", merchant_code=MERCHANT, status="PAID",
    transaction_code="TEENSK4W2K", transaction_id="410fc44a-5956-44e1-b5cc-19c6f8d727a4",
    transactions=[CheckoutSuccessTransaction(id="410fc44a-5956-44e1-b5cc-19c6f8d727a4",
                                             transaction_code="TEENSK4W2K", amount=25.0, currency="GBP",
                                             status="SUCCESSFUL", payment_type="ECOM", merchant_code=MERCHANT)])


def sdk_json(model: pydantic.BaseModel) -> str:
    """A body written the way SumUp writes one: field names as on the wire, absent fields left out."""
    return model.model_dump_json(by_alias=True, exclude_none=True)


def test_checker_accepts_a_body_the_sdk_wrote():
    """A body serialised from the SDK's own model has nothing to report."""
    assert_conforms(CheckoutSuccess, sdk_json(SDK_PAID))


@pytest.mark.parametrize("mutate, expected", [
    (lambda b: b.update(amount_cents=2500), "$.amount_cents: not a field of CheckoutSuccess"),
    (lambda b: b["transactions"][0].update(transaction_cod="X"),
     "$.transactions[0].transaction_cod: not a field of CheckoutSuccessTransaction"),
    (lambda b: b.update(status="AUTHORIZED"), "$.status: 'AUTHORIZED' is not a documented value"),
    (lambda b: b["transactions"][0].update(status="CHARGE_BACK"),
     "$.transactions[0].status: 'CHARGE_BACK' is not a documented value"),
])
def test_checker_reports_unknown_keys_and_undocumented_values(mutate, expected):
    """An unknown key (top level or nested) or an enum value the spec does not list is reported, by path."""
    body = json.loads(sdk_json(SDK_PAID))
    mutate(body)
    (problem,) = conformance_problems(CheckoutSuccess, json.dumps(body))
    assert problem.startswith(expected)


def test_checker_reports_unknown_key_inside_a_list_body():
    """An unknown key in one element of a list body is reported with the element's index."""
    good = json.loads(sdk_json(SDK_PAID))
    text = json.dumps([good, {**good, "extra": 1}])
    assert conformance_problems(ListCheckouts200Response, text) == ["$[1].extra: not a field of CheckoutSuccess"]


def test_checker_reports_wrong_json_types():
    """An amount sent as a string, which lax validation would quietly accept, is reported."""
    body = json.loads(sdk_json(SDK_PAID))
    body["amount"] = "25.00"
    (problem,) = conformance_problems(CheckoutSuccess, json.dumps(body))
    assert problem.startswith("invalid with exact JSON types") and "amount" in problem


def test_checker_reports_missing_required_field():
    """A Problem without its required `type` is invalid even though its other keys are fields."""
    problems = conformance_problems(Problem, '{"title": "Unauthorized", "status": 401}')
    assert problems and all(p.startswith("invalid") and "type" in p for p in problems)


# -- what the simulator sends -----------------------------------------------------------------------


def get(http, fake, path: str, token: str = KEY, **kw) -> requests.Response:
    return http.get(f"{fake.url}{path}", headers={"Authorization": f"Bearer {token}"}, **kw)


def refresh(http, fake, **form) -> requests.Response:
    data = {"grant_type": "refresh_token", "refresh_token": "rt-1", "client_id": "test-client",
            "client_secret": "test-secret", **form}
    return http.post(f"{fake.url}/token", data=data)


def attempt(status: str, txn_status: str) -> dict:
    """One transaction as the simulator writes it for `status`, relabelled `txn_status` (e.g. a refund)."""
    (txn,) = checkout_body(CID, REF, "25.0", "GBP", MERCHANT, status)["transactions"]
    return {**txn, "status": txn_status}


CHECKOUTS = {
    "PAID": lambda: checkout_body(CID, REF, "25.0", "GBP", MERCHANT, "PAID"),
    "PAID, no transactions": lambda: checkout_body(CID, REF, "25.0", "GBP", MERCHANT, "PAID", transactions=[]),
    "PAID, amount 10.1": lambda: checkout_body(CID, REF, Decimal("10.1"), "EUR", MERCHANT, "PAID"),
    "PAID, amount 12": lambda: checkout_body(CID, REF, "12", "EUR", MERCHANT, "PAID"),
    "PAID, refunded": lambda: checkout_body(CID, REF, "25.0", "GBP", MERCHANT, "PAID",
                                            transactions=[attempt("PAID", "REFUNDED")]),
    "FAILED": lambda: checkout_body(CID, REF, "25.0", "GBP", MERCHANT, "FAILED"),
    "FAILED, no transactions": lambda: checkout_body(CID, REF, "25.0", "GBP", MERCHANT, "FAILED", transactions=[]),
    "PENDING": lambda: checkout_body(CID, REF, "25.0", "GBP", MERCHANT, "PENDING"),
    "PENDING, a pending attempt": lambda: checkout_body(CID, REF, "25.0", "GBP", MERCHANT, "PENDING",
                                                        transactions=[attempt("FAILED", "PENDING")]),
    "EXPIRED": lambda: checkout_body(CID, REF, "25.0", "GBP", MERCHANT, "EXPIRED"),
    "EXPIRED, a failed attempt": lambda: checkout_body(CID, REF, "25.0", "GBP", MERCHANT, "EXPIRED",
                                                       transactions=[attempt("FAILED", "FAILED")]),
}


@pytest.mark.parametrize("case", list(CHECKOUTS))
def test_checkout_as_served_conforms_to_checkout_success(fake, http, case):
    """GET /v0.1/checkouts/{id} serves a body CheckoutSuccess fully describes (keys, types, enum values)."""
    body = CHECKOUTS[case]()
    fake.add_checkout(body)
    r = get(http, fake, f"/v0.1/checkouts/{CID}")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert json.loads(r.text)["status"] == body["status"]
    assert_conforms(CheckoutSuccess, r.text)


def test_charge_back_transaction_is_the_only_departure(fake, http):
    """A CHARGE_BACK transaction (seen live, not in the spec's list) is the only departure from CheckoutSuccess."""
    fake.add_checkout(checkout_body(CID, REF, "25.0", "GBP", MERCHANT, "PAID",
                                    transactions=[attempt("PAID", "CHARGE_BACK")]))
    text = get(http, fake, f"/v0.1/checkouts/{CID}").text
    assert CheckoutSuccess.model_validate_json(text).transactions[0].status == "CHARGE_BACK"
    (problem,) = conformance_problems(CheckoutSuccess, text)
    assert problem.startswith("$.transactions[0].status: 'CHARGE_BACK' is not a documented value")


def test_list_by_reference_conforms_to_list_checkouts_response(fake, http):
    """The list by checkout_reference is a JSON array of CheckoutSuccess bodies, empty when nothing matches."""
    fake.add_checkout(checkout_body(CID, REF, "25.0", "GBP", MERCHANT, "FAILED"))
    fake.add_checkout(checkout_body("c2", REF, "25.0", "GBP", MERCHANT, "PAID"))
    r = get(http, fake, "/v0.1/checkouts", params={"checkout_reference": REF})
    assert r.status_code == 200 and [c["status"] for c in r.json()] == ["FAILED", "PAID"]
    assert_conforms(ListCheckouts200Response, r.text)
    empty = get(http, fake, "/v0.1/checkouts", params={"checkout_reference": "JE-NONE"})
    assert empty.status_code == 200 and empty.json() == []
    assert_conforms(ListCheckouts200Response, empty.text)


@pytest.mark.parametrize("path", [f"/v0.1/checkouts/{CID}", f"/v0.1/checkouts?checkout_reference={REF}"])
def test_401_conforms_to_problem(fake, http, path):
    """A refused token gets an RFC 9457 problem (Problem, as the SDK reads 401 on checkout routes)."""
    fake.add_checkout(checkout_body(CID, REF, "25.0", "GBP", MERCHANT, "PAID"))
    r = get(http, fake, path, token="nope")
    assert r.status_code == 401 and r.headers["Content-Type"] == "application/problem+json"
    assert_conforms(Problem, r.text)
    assert Problem.model_validate_json(r.text).status == 401


@pytest.mark.parametrize("path, token", [(f"/v0.1/checkouts/{CID}", OTHER_KEY), ("/v0.1/checkouts/missing", KEY),
                                         ("/v0.1/elsewhere", KEY)])
def test_404_conforms_to_error(fake, http, path, token):
    """A missing checkout, another merchant's checkout and an unknown path all get Error with NOT_FOUND."""
    fake.add_checkout(checkout_body(CID, REF, "25.0", "GBP", MERCHANT, "PAID"))
    r = get(http, fake, path, token=token)
    assert r.status_code == 404
    assert_conforms(Error, r.text)
    assert Error.model_validate_json(r.text).error_code == "NOT_FOUND"


# /token has no SDK model (see the module docstring): SUMUP.md's fields and RFC 6749's error fields.
TOKEN_FIELDS = {"access_token": str, "token_type": str, "expires_in": int, "refresh_token": str, "scope": str}
OAUTH_ERROR_FIELDS = {"error": str, "error_description": str, "error_uri": str}


def assert_fields(text: str, fields: dict[str, type], required: set[str]) -> dict:
    body = json.loads(text)
    assert isinstance(body, dict) and set(body) <= set(fields) and required <= set(body)
    assert all(type(v) is fields[k] for k, v in body.items()), body  # exact: a bool is not an int
    return body


@pytest.mark.parametrize("rotate", [True, False])
def test_token_success_matches_sumup_md(http, rotate):
    """A refresh answers access_token, token_type Bearer, an int expires_in and nothing SUMUP.md does not name."""
    with FakeSumUp(rotate_refresh_tokens=rotate) as fake:
        fake.add_refresh_token("rt-1", MERCHANT)
        r = refresh(http, fake)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    body = assert_fields(r.text, TOKEN_FIELDS, {"access_token", "token_type", "expires_in"})
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0


@pytest.mark.parametrize("form, status, error", [
    ({"client_secret": "wrong"}, 401, "invalid_client"),
    ({"grant_type": "password"}, 400, "unsupported_grant_type"),
    ({"refresh_token": "rt-unknown"}, 400, "invalid_grant"),
])
def test_token_errors_are_oauth_errors(fake, http, form, status, error):
    """Each /token refusal is an OAuth error body (error, error_description) with its RFC 6749 status."""
    fake.add_refresh_token("rt-1", MERCHANT)
    r = refresh(http, fake, **form)
    assert r.status_code == status
    assert assert_fields(r.text, OAUTH_ERROR_FIELDS, {"error"})["error"] == error


# -- payverify reading bodies built from the SDK's models ------------------------------------------


def sdk_checkout(status: str, amount: float, currency: str = "EUR", txn_status: str | None = None,
                 paid: bool = False) -> CheckoutSuccess:
    """A checkout as SumUp's models define it; `paid` adds the top-level codes of the completing transaction."""
    txns = [] if txn_status is None else [CheckoutSuccessTransaction(
        id="410fc44a-5956-44e1-b5cc-19c6f8d727a4", transaction_code="TEENSK4W2K", amount=amount,
        currency=currency, status=txn_status, payment_type="ECOM", merchant_code=MERCHANT,
        timestamp="2026-08-20T10:03:12.876Z", auth_code="053201" if txn_status != "FAILED" else None)]
    codes = {"transaction_code": "TEENSK4W2K", "transaction_id": "410fc44a-5956-44e1-b5cc-19c6f8d727a4"}
    return CheckoutSuccess(id=CID, checkout_reference=REF, amount=amount, currency=currency,
                           merchant_code=MERCHANT, description="2 tickets", status=status,
                           date="2026-08-20T10:00:00.000+00:00", transactions=txns, **(codes if paid else {}))


@pytest.mark.parametrize("status, amount, txn_status, paid, exact", [
    ("PAID", 10.1, "SUCCESSFUL", True, Decimal("10.1")),
    ("PAID", 12, "SUCCESSFUL", True, Decimal("12")),
    ("PAID", 25.0, "REFUNDED", True, Decimal("25")),
    ("FAILED", 10.1, "FAILED", False, Decimal("10.1")),
    ("PENDING", 12, None, False, Decimal("12")),
    ("EXPIRED", 0.1, None, False, Decimal("0.1")),
])
def test_payverify_reads_sdk_built_checkouts(status, amount, txn_status, paid, exact):
    """payverify reads an SDK-built checkout's status, exact amount, currency, merchant, codes and transactions."""
    text = sdk_json(sdk_checkout(status, amount, txn_status=txn_status, paid=paid))
    answer = answer_from_reply(200, text)
    assert answer.kind == AnswerKind.CHECKOUT, answer.reason
    co = answer.checkout
    assert (co.status, co.currency, co.merchant_code, co.checkout_reference, co.id) == (
        status, "EUR", MERCHANT, REF, CID)
    assert isinstance(co.amount, Decimal) and co.amount == exact
    assert co.transaction_code == ("TEENSK4W2K" if paid else None)
    assert co.transaction_id == ("410fc44a-5956-44e1-b5cc-19c6f8d727a4" if paid else None)
    expected = [] if txn_status is None else [("TEENSK4W2K", txn_status, exact, "EUR", MERCHANT)]
    assert [(t.transaction_code, t.status, t.amount, t.currency, t.merchant_code) for t in co.transactions] == expected
    assert all(isinstance(t.amount, Decimal) for t in co.transactions)


def test_payverify_sorts_sdk_built_transactions():
    """On an SDK-built PAID checkout, a SUCCESSFUL transaction counts as successful and a REFUNDED one as reversed."""
    paid = answer_from_reply(200, sdk_json(sdk_checkout("PAID", 10.1, txn_status="SUCCESSFUL", paid=True))).checkout
    refunded = answer_from_reply(200, sdk_json(sdk_checkout("PAID", 10.1, txn_status="REFUNDED", paid=True))).checkout
    assert [t.status for t in paid.successful_transactions] == ["SUCCESSFUL"] and paid.reversed_transactions == ()
    assert [t.status for t in refunded.reversed_transactions] == ["REFUNDED"]
    assert refunded.successful_transactions == ()


# -- the transaction history and /v0.1/me ---------------------------------------------------------

HISTORY = f"/v2.1/merchants/{MERCHANT}/transactions/history"
WHEN = dt.datetime(2026, 8, 20, 10, 3, 12, 876000, tzinfo=dt.UTC)

HISTORY_ITEMS = {
    "a payment": lambda f: f.add_transaction(MERCHANT, transaction_code="TEENSK4W2K", amount="25.0"),
    "amount 10.10, EUR": lambda f: f.add_transaction(MERCHANT, transaction_code="T1", amount="10.10",
                                                     currency="EUR", timestamp=WHEN),
    "a refunded payment": lambda f: f.add_transaction(MERCHANT, transaction_code="T2", amount="25.0",
                                                      status="REFUNDED", refunded_amount="25.0"),
    "a refund": lambda f: f.add_transaction(MERCHANT, transaction_code="T3", amount="5", type="REFUND"),
    "a failed card payment at the stand": lambda f: f.add_transaction(
        MERCHANT, transaction_code="T4", amount="3.50", status="FAILED", payment_type="POS"),
    "cash": lambda f: f.add_transaction(MERCHANT, transaction_code="T5", amount="2", payment_type="CASH"),
    "a paid checkout": lambda f: f.add_checkout(checkout_body(CID, REF, "25.0", "GBP", MERCHANT, "PAID")),
    "refunded later": lambda f: (f.add_transaction(MERCHANT, transaction_code="T6", amount="25.0"),
                                 f.update_transaction(MERCHANT, "T6", status="REFUNDED",
                                                      refunded_amount=Decimal("10"))),
}


@pytest.mark.parametrize("case", list(HISTORY_ITEMS))
def test_history_as_served_conforms_to_list_transactions_response(fake, http, case):
    """The history page, and each item in it, is fully described by ListTransactionsV21200Response and
    TransactionHistory (keys, exact JSON types, documented enum values)."""
    HISTORY_ITEMS[case](fake)
    r = get(http, fake, HISTORY)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert_conforms(ListTransactionsV21200Response, r.text)
    (item,) = json.loads(r.text)["items"]
    assert_conforms(TransactionHistory, json.dumps(item))


def test_history_paging_links_conform(fake, http):
    """A page with a next link and the last page both conform; the link is a TransactionsHistoryLink."""
    for i in range(3):
        fake.add_transaction(MERCHANT, transaction_code=f"T{i}", amount="1.5")
    first = get(http, fake, HISTORY, params={"limit": "2", "statuses[]": ["SUCCESSFUL", "REFUNDED"]})
    assert_conforms(ListTransactionsV21200Response, first.text)
    (link,) = ListTransactionsV21200Response.model_validate_json(first.text).links
    assert isinstance(link, TransactionsHistoryLink) and link.rel == "next"
    last = get(http, fake, f"{HISTORY}?{link.href}")
    assert_conforms(ListTransactionsV21200Response, last.text)
    assert ListTransactionsV21200Response.model_validate_json(last.text).links == []


def test_charge_back_history_status_is_the_only_departure(fake, http):
    """A CHARGE_BACK status (seen live, not in TransactionStatus) is the only departure from the SDK's model."""
    fake.add_transaction(MERCHANT, transaction_code="T1", amount="25.0")
    fake.update_transaction(MERCHANT, "T1", status="CHARGE_BACK")
    text = get(http, fake, HISTORY).text
    assert ListTransactionsV21200Response.model_validate_json(text).items[0].status == "CHARGE_BACK"
    (problem,) = conformance_problems(ListTransactionsV21200Response, text)
    assert problem.startswith("$.items[0].status: 'CHARGE_BACK' is not a documented value")


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=ten", "order=sideways", "oldest_time=yesterday",
                                   "changes_since=", "newest_ref=nobody", "order=ascending&order=descending"])
def test_history_400_conforms_to_error(fake, http, query):
    """Parameters SumUp would refuse get 400 with an Error body, as the SDK reads 400 on this route."""
    r = get(http, fake, f"{HISTORY}?{query}")
    assert r.status_code == 400
    assert_conforms(Error, r.text)
    assert Error.model_validate_json(r.text).message


@pytest.mark.parametrize("token", ["nope", OTHER_KEY])
def test_history_401_conforms_to_problem(fake, http, token):
    """An unknown token, or another merchant's, gets the RFC 9457 problem the SDK reads for 401 here."""
    r = get(http, fake, HISTORY, token=token)
    assert r.status_code == 401 and r.headers["Content-Type"] == "application/problem+json"
    assert_conforms(Problem, r.text)


def test_payverify_reads_sdk_built_history():
    """payverify reads an SDK-built history page: exact amounts, statuses, types, UTC times and the next link."""
    body = ListTransactionsV21200Response(
        items=[TransactionHistory(id="410fc44a", transaction_code="TEENSK4W2K", amount=10.1, currency="EUR",
                                  status="REFUNDED", type="PAYMENT", payment_type="ECOM", refunded_amount=2.5,
                                  timestamp=WHEN, product_summary="2 tickets"),
               TransactionHistory(transaction_code="TPOS", amount=12, status="SUCCESSFUL", payment_type="POS")],
        links=[TransactionsHistoryLink(rel="next", href="limit=2&newest_ref=410fc44a")])
    page = parse_page(sdk_json(body))
    first, second = page.items
    assert (first.transaction_code, first.amount, first.refunded_amount, first.currency, first.status,
            first.type, first.payment_type, first.timestamp) == (
        "TEENSK4W2K", Decimal("10.1"), Decimal("2.5"), "EUR", "REFUNDED", "PAYMENT", "ECOM", WHEN)
    assert (second.amount, second.payment_type, second.timestamp) == (Decimal("12"), "POS", None)
    assert page.next_query == "limit=2&newest_ref=410fc44a"


# The legacy MerchantAccount (sumup-go merchant/merchant.go): its top-level fields, its merchant profile's
# and its account's. The simulator sends a subset; every field is optional there.
ME_FIELDS = {"account", "app_settings", "merchant_profile", "permissions", "personal_profile"}
ME_PROFILE_FIELDS = {"address", "bank_accounts", "business_owners", "company_name", "company_registration_number",
                     "country", "doing_business_as", "extdev", "legal_type", "locale", "merchant_category_code",
                     "merchant_code", "mobile_phone", "nature_and_purpose", "payout_zone_migrated",
                     "permanent_certificate_access_code", "settings", "vat_id", "vat_rates", "website"}
ME_ACCOUNT_FIELDS = {"type": {"normal", "operator"}, "username": None}


def test_me_matches_the_legacy_merchant_account(fake, http):
    """/v0.1/me names only MerchantAccount fields, with the key's merchant code where payverify reads it."""
    r = get(http, fake, "/v0.1/me")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    body = r.json()
    assert set(body) <= ME_FIELDS and set(body["merchant_profile"]) <= ME_PROFILE_FIELDS
    assert all(isinstance(v, str) for v in body["merchant_profile"].values())
    assert set(body["account"]) <= set(ME_ACCOUNT_FIELDS) and body["account"]["type"] in ME_ACCOUNT_FIELDS["type"]
    assert merchant_code_of(r.text) == MERCHANT
    assert merchant_code_of(get(http, fake, "/v0.1/me", token=OTHER_KEY).text) == OTHER


def test_me_401_conforms_to_problem(fake, http):
    """An unknown token on /v0.1/me gets the same RFC 9457 problem as the other routes."""
    r = get(http, fake, "/v0.1/me", token="nope")
    assert r.status_code == 401 and r.headers["Content-Type"] == "application/problem+json"
    assert_conforms(Problem, r.text)

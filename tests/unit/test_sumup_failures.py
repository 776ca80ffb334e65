"""A SumUp request failure's class (the metrics' `kind` label) is set where the failure is seen: by
the client when it gives up, by the answer for a reply, by the verifier for credentials; never read from a message."""

from __future__ import annotations

import json

import pytest
import requests

from payverify.config import load_settings
from payverify.errors import SumUpUnavailable
from payverify.orders.verify import Verifier
from payverify.sumup.answer import FAILURES, Answer, AnswerKind, answer_from_reply
from payverify.sumup.client import Reply, ReplyCutOff, RetryableReply
from payverify.sumup.client import _failure as client_failure
from tests.factories import make_order

PAID_BODY = json.dumps({"id": "4e425463-3e1b-431d-83fa-1e51c2925e99", "checkout_reference": "JE-7F3K2Q",
                        "amount": 25.0, "currency": "GBP", "merchant_code": "MH4H92C7", "status": "PAID",
                        "transaction_code": "TEENSK4W2K"})


@pytest.mark.parametrize(("cause", "failure"), [
    (requests.exceptions.ReadTimeout(), "timeout"),
    (requests.exceptions.ConnectTimeout(), "timeout"),
    (ReplyCutOff(timed_out=True), "timeout"),
    (ReplyCutOff(timed_out=False), "connection"),
    (requests.exceptions.ConnectionError(), "connection"),
    (requests.exceptions.SSLError(), "connection"),
    (RetryableReply(503, None), "http_5xx"),
    (RetryableReply(429, 1.0), "http_429"),
])
def test_client_sets_the_failure_where_it_gives_up(cause, failure):
    """The client names the failure when retries run out; the answer carries it to the metrics unchanged."""
    error = client_failure(cause, 3)
    assert error.failure == failure
    answer = Answer.unavailable(error)
    assert answer.failure == failure and answer.transport_failure and answer.kind is AnswerKind.UNKNOWN


def test_the_failure_is_never_read_back_out_of_the_message():
    """The reason text is for people: a failure comes only from where the error was seen."""
    answer = Answer.unavailable(SumUpUnavailable("timed out after 3 attempts", failure="connection"))
    assert answer.failure == "connection"
    too_large = Answer.unavailable(SumUpUnavailable("reply larger than 1 MiB", failure="not_understood",
                                                    http_status=200))
    assert too_large.failure == "not_understood" and too_large.http_status == 200


@pytest.mark.parametrize(("answer", "failure"), [
    (answer_from_reply(401, ""), "http_401"),
    (answer_from_reply(403, ""), "http_other"),
    (answer_from_reply(302, ""), "http_other"),
    (answer_from_reply(200, "<html>maintenance</html>"), "not_understood"),
    (answer_from_reply(404, ""), None),
    (answer_from_reply(200, PAID_BODY), None),
])
def test_answers_from_replies_carry_their_failure(answer, failure):
    """Each kind of non-definitive reply gets its label; a definitive answer (404, a checkout) gets none."""
    assert answer.failure == failure
    assert failure is None or failure in FAILURES


class _ScriptedClient:
    """Stands in for SumUpClient in Verifier.ask: answers with the queued replies or raises."""

    def __init__(self, *replies):
        self.replies = list(replies)

    def get_checkout(self, checkout_id, token):
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


@pytest.mark.parametrize(("api_key", "order", "replies", "failure"), [
    (None, make_order(), (), "credentials"),
    ("sup_sk_kind_test", make_order(sumup_checkout_id=None), (), None),
    ("sup_sk_kind_test", make_order(), (Reply(401, ""),), "http_401"),
    ("sup_sk_kind_test", make_order(), (SumUpUnavailable("gave up", failure="http_5xx", http_status=502),),
     "http_5xx"),
    ("sup_sk_kind_test", make_order(), (Reply(404, ""),), None),
])
def test_verifier_sets_the_failure_where_it_asks(api_key, order, replies, failure):
    """The sweep's tally reads `failure` as Verifier.ask set it: no token is `credentials`, an order
    without a checkout was not asked (no failure), SumUp's own trouble keeps the client's failure."""
    environ = {"SUMUP_API_KEY": api_key} if api_key else {}
    verifier = Verifier(load_settings(environ=environ), db=None, client=_ScriptedClient(*replies), attempt=None,
                        dry_run=True)
    assert verifier.ask(order).failure == failure

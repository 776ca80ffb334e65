"""The "awaiting payment" condition is written once (queries.sql's `awaiting` fragment) and is
models.py's: a status of AWAITING_PAYMENT, and a pending order only once it has a checkout."""

from __future__ import annotations

import itertools
import re
from importlib import resources

from payverify import models
from payverify.db.queries import parse_queries

STATUSES = (models.PENDING, models.PENDING_VERIFICATION, models.COMPLETED, models.FAILED, models.EXPIRED,
            models.REQUIRES_MANUAL_REVIEW, "refunded")  # the site's status is a plain varchar
CHECKOUTS = (None, "c0a8f3e2-1b7d-4c5e-9f60-2d4b8a1e7c93")


def _queries_sql() -> str:
    return resources.files("payverify.db").joinpath("queries.sql").read_text(encoding="utf-8")


def test_the_fragment_selects_what_models_calls_awaiting(db):
    cases = list(itertools.product(STATUSES, CHECKOUTS))
    values = ", ".join(f"({i}, %(s{i})s::text, %(c{i})s::text)" for i in range(len(cases)))
    probe = parse_queries(_queries_sql() + "\n-- name: probe\n"
                          f"SELECT o.i FROM (VALUES {values}) AS o(i, status, sumup_checkout_id) WHERE {{awaiting}}\n")
    params = {f"s{i}": s for i, (s, _) in enumerate(cases)} | {f"c{i}": c for i, (_, c) in enumerate(cases)}
    with db.transaction() as tx:
        selected = {row["i"] for row in tx.fetch_sql(probe["probe"], params)}
    expected = {i for i, (status, checkout) in enumerate(cases)
                if status in models.AWAITING_PAYMENT and (status != models.PENDING or checkout is not None)}
    assert selected == expected


def test_no_query_spells_the_condition_out_again():
    # Only the fragment says that a pending order awaits payment with a checkout.
    text = "\n".join(line for line in _queries_sql().splitlines() if not line.lstrip().startswith("--"))
    assert len(re.findall(r"\bo\.status\s*=\s*'pending'", text)) == 1  # the outbox's 'pending' is another
    assert not re.search(r"\bo\.status\s+IN\s*\([^)]*'pending'", text)

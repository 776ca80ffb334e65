"""Logging from real sweeps: one canonical JSON line per order in the log file, no secret anywhere."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from tests.helpers import rows


def log_lines(env):
    with open(env["PAYVERIFY_LOG_FILE"], encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def test_one_canonical_line_per_order(seed, env, run_payverify):
    """Each verified order gets one `order.verified` JSON line with run id, ids, outcome and duration,
    naming the order number but never the customer's email address."""
    artist = seed.artist()
    event = seed.event(artist)
    tt = seed.ticket_type(event)
    paid = seed.order([(tt, 1)], event_id=event, email="someone.private@example.org")
    young = seed.order([(tt, 1)], event_id=event, sumup_status="PENDING", status="pending")
    assert run_payverify("sweep").returncode == 0
    lines = log_lines(env)
    verified = [line for line in lines if line["event"] == "order.verified"]
    assert sorted(line["order_number"] for line in verified) == sorted([paid.order_number, young.order_number])
    for line in verified:
        assert {"run_id", "order_id", "checkout_id", "outcome", "duration_ms", "timestamp", "level"} <= set(line)
    assert len({line["run_id"] for line in verified}) == 1
    outcomes = {line["order_number"]: line["outcome"] for line in verified}
    assert outcomes == {paid.order_number: "completed", young.order_number: "unchanged"}
    assert "someone.private@example.org" not in Path(env["PAYVERIFY_LOG_FILE"]).read_text(encoding="utf-8")


def test_canary_secrets_never_leak(seed, env, db, sumup, run_payverify):
    """With canary credentials at DEBUG, through refreshes, 401s and failures, no secret appears in
    stdout, stderr, the log file, the audit table or the outbox."""
    from payverify_dev.seed import PLATFORM_MERCHANT
    from payverify_dev.sumup_server import Scripted

    canary_key = "sup_sk_CANARYKEY0001"
    sumup.add_api_key(canary_key, PLATFORM_MERCHANT)
    artist = seed.artist()
    oauth = seed.artist("OAuth Artist", oauth=True, token_expires_in=timedelta(minutes=-1))
    revoked = seed.artist("Revoked Artist", oauth=True, token_expires_in=timedelta(minutes=-1))
    sumup.revoke_refresh_token(revoked.refresh_token)
    event, event2, event3 = seed.event(artist), seed.event(oauth), seed.event(revoked)
    tt, tt2, tt3 = seed.ticket_type(event), seed.ticket_type(event2), seed.ticket_type(event3)
    seed.order([(tt, 1)], event_id=event)
    seed.order([(tt2, 1)], event_id=event2)
    seed.order([(tt3, 1)], event_id=event3)
    bad = seed.order([(tt, 1)], event_id=event)
    sumup.script(bad.checkout_id, Scripted(status=500, body="<html>oops</html>"), Scripted(status=401))

    result = run_payverify("sweep", extra_env={
        "SUMUP_API_KEY": canary_key, "PAYVERIFY_LOG_LEVEL": "DEBUG",
        "PAYVERIFY_DATABASE_URL": env["PAYVERIFY_DATABASE_URL"]})
    assert result.returncode == 0, result.stderr
    secrets = [canary_key, sumup.client_secret, oauth.access_token, oauth.refresh_token,
               revoked.access_token, revoked.refresh_token, *sumup.refresh_tokens_issued]
    audit = repr(rows(db, "SELECT * FROM payverify_audit"))
    outbox = repr(rows(db, "SELECT * FROM payverify_outbox"))
    log_text = Path(env["PAYVERIFY_LOG_FILE"]).read_text(encoding="utf-8")
    assert "order.verified" in log_text
    for place, text in {"stdout": result.stdout, "stderr": result.stderr, "log": log_text,
                        "audit": audit, "outbox": outbox}.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into {place}"

"""The token refresh holds the artist's row lock while it asks SumUp: a session dropped in that
window loses the rotated pair. So it is one attempt, bounded by the client's timeouts, with no retry
and no waiting out a Retry-After while the lock is held. Real `payverify sweep` processes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from payverify.exitcodes import ExitStatus
from payverify_dev.sumup_server import Scripted
from tests.integration.test_oauth import artist_tokens, order_row, shop


@pytest.mark.parametrize("reply", [Scripted(status=503), Scripted(status=429, headers={"Retry-After": "20"})],
                         ids=["503", "429 Retry-After 20"])
def test_a_refresh_is_one_attempt_and_the_order_waits(reply, seed, db, sumup, run_payverify):
    artist = seed.artist(oauth=True, token_expires_in=timedelta(minutes=-5))
    event, standing = shop(seed, artist)
    order = seed.order([(standing, 1)], event_id=event)
    sumup.script_token(reply)  # then /token answers again
    before = artist_tokens(db, artist.id)
    result = run_payverify("sweep")
    assert result.returncode in (ExitStatus.OK, ExitStatus.SUMUP_UNAVAILABLE), result.stderr
    assert sumup.token_calls == 1  # no second attempt under the lock, no sleep before one
    assert order_row(db, order.id)["status"] == "pending_verification"
    assert artist_tokens(db, artist.id) == before
    # SumUp is back: the next run refreshes and settles.
    result = run_payverify("sweep")
    assert result.returncode == ExitStatus.OK, result.stderr
    assert order_row(db, order.id)["status"] == "completed"
    assert sumup.token_calls == 2

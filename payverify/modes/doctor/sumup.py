"""doctor's SumUp checks: the API answers, the platform key is accepted, each connected artist's
token works. The artists' check takes Credentials' refresh-and-retry path, exactly as a sweep does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from payverify import logconfig
from payverify.errors import PayverifyError, SumUpUnavailable, TokenRefreshFailed
from payverify.modes.doctor.framework import SKIP, Check, Found, Line, Result, needed
from payverify.modes.runtime import sumup_client
from payverify.printable import printable
from payverify.secret import Secret
from payverify.sumup.client import Reply, SumUpClient
from payverify.sumup.credentials import ArtistDisconnected, Credentials, MissingCredentials, TokenOwner

# A reference no checkout ever has: the request proves the credentials without listing anything.
PROBE_REFERENCE = "payverify-doctor"
# Sent when no platform key is set, only to see whether SumUp answers at all (it answers 401).
_NO_KEY = Secret("payverify-doctor-no-key")


def check_sumup_api(found: Found, check: Check) -> Result:
    base, key = found.config.sumup_api_base_url, found.config.sumup_api_key
    # Two quick attempts: a doctor should answer in seconds, not sit out a sweep's backoff.
    found.client = sumup_client(found.config, max_attempts=2, wait=lambda state: 0.5,
                                user_agent="payverify-doctor")
    try:
        reply = found.client.find_checkouts(PROBE_REFERENCE, key or _NO_KEY)
    except SumUpUnavailable as exc:
        return check.fail(f"{base} unreachable: {exc}")
    found.sumup_answers = True
    if key:
        found.platform_reply = reply
    return check.ok(f"{base} answers")


def check_platform_key(found: Found, check: Check) -> Result:
    status = needed(found.platform_reply).status
    if status == 200:
        return check.ok("accepted")
    if status == 401:
        return check.fail("platform key refused (HTTP 401): check SUMUP_API_KEY")
    return check.fail(f"SumUp answered HTTP {status}: is SUMUP_API_BASE_URL right?")


def check_artists(found: Found, check: Check) -> Iterator[Result]:
    try:
        with found.database.transaction() as tx:
            artists = tx.all("doctor_oauth_artists")
    except PayverifyError as exc:
        yield check.fail(str(exc))
        return
    if not artists:
        yield Result(SKIP, check.name, "no artist has connected SumUp")
        return
    credentials = Credentials(found.config, found.sumup, found.database)
    for row in artists:
        logconfig.register_secret(row["sumup_access_token"])
        owner = TokenOwner(row["id"], row["name"] or "", oauth=True)
        label = f"SumUp token of artist '{printable(owner.artist_name, 60)}' (id {owner.artist_id})"
        yield _guarded_artist(Line(label, check.exit_status), found.sumup, credentials, owner, row)


def _guarded_artist(line: Line, client: SumUpClient, credentials: Credentials, owner: TokenOwner,
                    row: dict[str, Any]) -> Result:
    try:
        return _artist(line, client, credentials, owner, row)
    except ArtistDisconnected:
        return line.fail("SumUp refused the refresh token (invalid_grant): the artist must reconnect SumUp")
    except MissingCredentials as exc:
        return line.fail(str(exc))
    except TokenRefreshFailed as exc:
        return line.fail(f"token refresh failed: {exc}")
    except SumUpUnavailable as exc:
        return line.fail(f"SumUp unreachable: {exc}")
    except PayverifyError as exc:
        return line.fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - one artist's trouble must not hide the others'
        return line.internal_error(exc)


def _artist(line: Line, client: SumUpClient, credentials: Credentials, owner: TokenOwner,
            row: dict[str, Any]) -> Result:
    used: list[Secret] = []

    def probe(token: Secret) -> Reply:
        used.append(token)
        return client.find_checkouts(PROBE_REFERENCE, token)

    # Exactly a sweep's path: refreshed (and the new pair stored) when expired, 401 -> refresh -> retry.
    call = credentials.call(owner, probe, about="the doctor's probe")
    if call.reply.status == 200:
        if call.retried or used[0].reveal() != (row["sumup_access_token"] or ""):
            return line.ok("refreshed; the new token pair is stored")
        tail = "" if row["refreshable"] else " (no refresh token: the artist must reconnect when it expires)"
        return line.ok("valid" + tail)
    if call.reply.status == 401 and not call.retried:
        return line.fail("SumUp refused the token (HTTP 401): the artist must reconnect SumUp")
    if call.reply.status == 401:
        return line.fail("SumUp refused the token even after a refresh: the artist must reconnect SumUp")
    return line.fail(f"SumUp answered HTTP {call.reply.status}")

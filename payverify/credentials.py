"""Which bearer token to use for an order's checkout, refreshing artists' OAuth tokens safely.

An artist with OAuth tokens uses their own access token; everyone else the platform API key.
A refresh happens under the artist's row lock (SELECT ... FOR UPDATE), re-checks expiry after
taking the lock (another process may have refreshed meanwhile), and stores the returned pair in the
same transaction before the token is used: refresh tokens are assumed to rotate, so losing the new
one would lock the artist out.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import structlog

from payverify import faults
from payverify.config import Settings
from payverify.db import Database
from payverify.errors import InvalidGrant, PayverifyError
from payverify.models import ArtistTokens, Order
from payverify.secret import Secret
from payverify.sumup.client import SumUpClient

log = structlog.get_logger("payverify.credentials")

# Refresh tokens that expire within this margin, so a request never starts with a dying token.
EXPIRY_MARGIN = timedelta(seconds=120)


class MissingCredentials(PayverifyError):
    """No way to authenticate for this artist (no platform key / no refresh token / no OAuth client)."""


class ArtistDisconnected(PayverifyError):
    """The artist's refresh token was refused (invalid_grant) in this run: they must reconnect."""


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Credentials:
    def __init__(self, settings: Settings, client: SumUpClient, db: Database,
                 clock: Callable[[], datetime] = _utcnow,
                 on_invalid_grant: Callable[[int, str], None] | None = None) -> None:
        self._settings = settings
        self._client = client
        self._db = db
        self._clock = clock
        self._on_invalid_grant = on_invalid_grant
        self._disconnected: set[int] = set()

    def token_for(self, order: Order) -> Secret:
        if order.artist_uses_oauth:
            return self._artist_token(order.artist_id, used=None)
        if not self._settings.sumup_api_key:
            raise MissingCredentials(
                f"SUMUP_API_KEY is not set and artist {order.artist_id} has not connected SumUp")
        return self._settings.sumup_api_key

    def after_unauthorized(self, order: Order, used: Secret) -> Secret | None:
        """A 401 with `used`: refresh once (unless someone else already did). None: nothing to retry."""
        if not order.artist_uses_oauth:
            return None
        return self._artist_token(order.artist_id, used=used)

    def _fresh(self, row: ArtistTokens) -> bool:
        if not row.sumup_access_token:
            return False
        # No recorded expiry: use the token and let a 401 trigger the refresh.
        return row.sumup_token_expires_at is None or row.sumup_token_expires_at - EXPIRY_MARGIN > self._clock()

    def _artist_token(self, artist_id: int, *, used: Secret | None) -> Secret:
        if artist_id in self._disconnected:
            raise ArtistDisconnected(f"artist {artist_id} must reconnect SumUp (refresh token refused)")
        if used is None:
            with self._db.transaction() as tx:
                row = ArtistTokens.from_row(tx.one("read_artist_tokens", artist_id=artist_id))
            if self._fresh(row):
                return Secret(row.sumup_access_token)
        return self._refresh(artist_id, used)

    def _refresh(self, artist_id: int, used: Secret | None) -> Secret:
        with self._db.transaction() as tx:
            row = ArtistTokens.from_row(tx.one("lock_artist_tokens", artist_id=artist_id))
            # Re-check under the lock: another process may have refreshed while we waited.
            newer = used is not None and row.sumup_access_token and row.sumup_access_token != used.reveal()
            if self._fresh(row) and (used is None or newer):
                return Secret(row.sumup_access_token)
            if not row.sumup_refresh_token:
                raise MissingCredentials(f"artist {artist_id} has no SumUp refresh token: they must reconnect")
            if not (self._settings.sumup_client_id and self._settings.sumup_client_secret):
                raise MissingCredentials("SUMUP_CLIENT_ID and SUMUP_CLIENT_SECRET are needed to refresh "
                                         f"artist {artist_id}'s SumUp token")
            try:
                grant = self._client.refresh_token(Secret(row.sumup_refresh_token),
                                                   self._settings.sumup_client_id,
                                                   self._settings.sumup_client_secret)
            except InvalidGrant:
                self._disconnected.add(artist_id)
                log.error("sumup.invalid_grant", artist_id=artist_id)
                if self._on_invalid_grant:
                    self._on_invalid_grant(artist_id, row.name)
                raise ArtistDisconnected(f"artist {artist_id} must reconnect SumUp (refresh token refused)") from None
            faults.point("after_token_response")
            refresh = grant.refresh_token.reveal() if grant.refresh_token else row.sumup_refresh_token
            tx.run("store_artist_tokens", artist_id=artist_id, access_token=grant.access_token.reveal(),
                   refresh_token=refresh, expires_at=self._clock() + timedelta(seconds=grant.expires_in))
        log.info("sumup.token_refreshed", artist_id=artist_id, expires_in=grant.expires_in)
        return grant.access_token

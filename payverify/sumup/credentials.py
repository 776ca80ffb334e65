"""Which bearer token to use for an order's checkout, refreshing artists' OAuth tokens safely.

An artist with OAuth tokens uses their own access token; everyone else the platform API key.
A request goes through `Credentials.call`, the one place that knows SumUp's 401 rule: refresh once,
retry once, then report it. A refresh happens under the artist's row lock (SELECT ... FOR UPDATE),
re-checks expiry after taking the lock (another process may have refreshed meanwhile), and stores
the returned pair in the same transaction before the token is used: refresh tokens are assumed to
rotate, so losing the new one would lock the artist out.

What a run learns (a refused refresh token, a refresh after a 401, a problem reported) is kept for
MEMORY_SECONDS only: `payverify watch` lives for weeks, and in that time an artist reconnects and a
token expires again. Within that minute a burst of orders still refreshes or alerts once.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from payverify import faults, logconfig
from payverify.config import Settings
from payverify.db import Database, Tx
from payverify.errors import InvalidGrant, PayverifyError
from payverify.models import ArtistTokens, Order
from payverify.secret import Secret
from payverify.sumup.client import Reply, SumUpClient

log = structlog.get_logger("payverify.sumup.credentials")

# Refresh tokens that expire within this margin, so a request never starts with a dying token.
EXPIRY_MARGIN = timedelta(seconds=120)
# How long a run remembers what it learnt about credentials: long enough that a burst of orders
# refreshes or alerts once, short enough that a reconnect or a new expiry is acted on within a minute.
MEMORY_SECONDS = 60.0


class MissingCredentials(PayverifyError):
    """No way to authenticate for this artist (no platform key / no refresh token / no OAuth client)."""


class ArtistDisconnected(PayverifyError):
    """The artist's refresh token was refused (invalid_grant) in this run: they must reconnect."""


@dataclass(frozen=True)
class TokenOwner:
    """Whose SumUp token a request uses: the artist's own OAuth token, or else the platform API key."""

    artist_id: int
    artist_name: str
    oauth: bool

    @classmethod
    def of(cls, order: Order) -> TokenOwner:
        return cls(order.artist_id, order.artist_name, order.artist_uses_oauth)

    @property
    def key(self) -> int | None:
        """Who the run's memory and the reconnect alert are about: the artist, or None for the platform key."""
        return self.artist_id if self.oauth else None


@dataclass(frozen=True)
class Call:
    """What `Credentials.call` got. `retried`: a 401 was answered by a second attempt with a new token."""

    reply: Reply
    retried: bool


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RunMemory:
    """What a run has learnt about credentials, shared by its worker threads, each fact for
    `seconds` after it was noted (then it is forgotten, and the next time counts as the first)."""

    def __init__(self, seconds: float = MEMORY_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._seconds = seconds
        self._clock = clock
        self._noted: dict[tuple[str, object], float] = {}  # (topic, key) -> when noted
        self._pruned = clock()

    def first(self, topic: str, key: object) -> bool:
        """True the first time (topic, key) is noted, and again once the note is `seconds` old."""
        with self._lock:
            now = self._clock()
            self._prune(now)
            if self._current((topic, key), now):
                return False
            self._noted[(topic, key)] = now
            return True

    def has(self, topic: str, key: object) -> bool:
        with self._lock:
            return self._current((topic, key), self._clock())

    def forget(self, topic: str, key: object) -> None:
        with self._lock:
            self._noted.pop((topic, key), None)

    def size(self) -> int:
        """How many facts are held (a method, not __len__: an empty memory must not be falsy)."""
        with self._lock:
            return len(self._noted)

    def _current(self, fact: tuple[str, object], now: float) -> bool:
        noted = self._noted.get(fact)
        return noted is not None and now - noted < self._seconds

    def _prune(self, now: float) -> None:
        """Drop what has expired, at most once per `seconds`: the memory holds about a minute's facts."""
        if now - self._pruned < self._seconds:
            return
        self._pruned = now
        for fact in [f for f, noted in self._noted.items() if now - noted >= self._seconds]:
            del self._noted[fact]


class _RefreshedRecently(Exception):
    """A 401 again within MEMORY_SECONDS of a refresh after a 401: a new token would not help."""


def _refused(artist_id: int, refresh_token: str | None) -> tuple[int, str]:
    """The memory's key for a refresh token SumUp refused: a digest, so no token is kept there."""
    return artist_id, hashlib.sha256((refresh_token or "").encode()).hexdigest()


class Credentials:
    """Tokens for one run. Trouble that needs a person (a refused refresh token, a 401 that survives
    a refresh, missing OAuth client settings) is logged as an error once per artist and minute, and
    reported through `on_auth_problem(artist_id, artist_name, problem)` so staff get an alert."""

    def __init__(self, settings: Settings, client: SumUpClient, db: Database,
                 clock: Callable[[], datetime] = _utcnow,
                 on_auth_problem: Callable[[int | None, str, str], None] | None = None,
                 memory: RunMemory | None = None) -> None:
        self._settings = settings
        self._client = client
        self._db = db
        self._clock = clock
        self._on_auth_problem = on_auth_problem
        self._memory = memory if memory is not None else RunMemory()

    def call(self, owner: TokenOwner, request: Callable[[Secret], Reply], *, about: str) -> Call:
        """`request` with the owner's token. SumUp's 401 is not always an expired token, so: refresh
        once, retry once, and a 401 that survives is reported (`about` names the request for staff).
        Raises MissingCredentials, ArtistDisconnected, TokenRefreshFailed or SumUpUnavailable."""
        token = self.token_for(owner)
        reply = request(token)
        if reply.status != 401:
            return Call(reply, retried=False)
        retry_with = self._after_unauthorized(owner, token)
        if retry_with is not None:
            reply = request(retry_with)
        if reply.status == 401:
            self._still_unauthorized(owner, about)
        return Call(reply, retried=retry_with is not None)

    def token_for(self, owner: TokenOwner) -> Secret:
        """The token to start with: refreshed (and the new pair stored) first when it is expiring."""
        if owner.oauth:
            return self._artist_token(owner.artist_id, owner.artist_name, used=None)
        if not self._settings.sumup_api_key:
            raise self._missing(None, owner.artist_name,
                                f"SUMUP_API_KEY is not set and artist {owner.artist_id} has not connected SumUp")
        return self._settings.sumup_api_key

    def worked(self, owner: TokenOwner) -> bool:
        """SumUp accepted these credentials. True the first time per owner and minute (and the first
        time after a problem was reported), so the caller re-arms the "reconnect SumUp" alert."""
        return self._memory.first("working", owner.key)

    def _after_unauthorized(self, owner: TokenOwner, used: Secret) -> Secret | None:
        """A 401 with `used`: a newer stored token, else a refresh (at most one per artist and minute
        after a 401, decided under the artist's row lock). None: nothing to retry with."""
        if not owner.oauth:
            return None
        try:
            return self._artist_token(owner.artist_id, owner.artist_name, used=used)
        except _RefreshedRecently:
            return None

    def _still_unauthorized(self, owner: TokenOwner, about: str) -> None:
        """SumUp refused the request even after a refresh (or with the platform key): staff must look."""
        who = f"artist {owner.artist_id}" if owner.oauth else "the platform API key"
        self._report(owner.key, owner.artist_name, f"SumUp refused {who} (HTTP 401) for {about}")

    def _report(self, artist_id: int | None, artist_name: str, problem: str) -> None:
        if not self._memory.first("reported", (artist_id, problem)):
            return
        log.error("sumup.auth_problem", artist_id=artist_id, problem=problem)
        self._memory.forget("working", artist_id)  # the next success re-arms the alert at once
        if self._on_auth_problem:
            self._on_auth_problem(artist_id, artist_name, problem)

    def _missing(self, artist_id: int | None, artist_name: str, problem: str) -> MissingCredentials:
        self._report(artist_id, artist_name, problem)
        return MissingCredentials(problem)

    @staticmethod
    def _tokens(tx: Tx, query: str, artist_id: int) -> ArtistTokens:
        """The artist's tokens, their values registered with the redactor before anything can log them."""
        found = tx.one(query, artist_id=artist_id)
        if found is None:
            raise PayverifyError(f"artist {artist_id} does not exist")
        row = ArtistTokens.from_row(found)
        logconfig.register_secret(row.sumup_access_token)
        logconfig.register_secret(row.sumup_refresh_token)
        return row

    def _fresh_token(self, row: ArtistTokens) -> Secret | None:
        """The stored access token if it is not about to expire."""
        token, expires_at = row.sumup_access_token, row.sumup_token_expires_at
        if not token:
            return None
        # No recorded expiry: use the token and let a 401 trigger the refresh.
        return Secret(token) if expires_at is None or expires_at - EXPIRY_MARGIN > self._clock() else None

    def _artist_token(self, artist_id: int, artist_name: str, *, used: Secret | None) -> Secret:
        if used is None:
            with self._db.transaction() as tx:
                row = self._tokens(tx, "read_artist_tokens", artist_id)
            fresh = self._fresh_token(row)
            if fresh is not None:
                return fresh  # whatever this run remembers: a reconnected artist's new token is used at once
            if self._memory.has("disconnected", _refused(artist_id, row.sumup_refresh_token)):
                raise ArtistDisconnected(f"artist {artist_id} must reconnect SumUp (refresh token refused)")
        try:
            return self._refresh(artist_id, used)
        except InvalidGrant:
            # The lock transaction has rolled back by now; the alert gets a transaction of its own.
            self._report(artist_id, artist_name,
                         f"SumUp refused artist {artist_id}'s refresh token (invalid_grant): they must reconnect")
            raise ArtistDisconnected(f"artist {artist_id} must reconnect SumUp (refresh token refused)") from None

    def _refresh(self, artist_id: int, used: Secret | None) -> Secret:
        with self._db.transaction() as tx:
            row = self._tokens(tx, "lock_artist_tokens", artist_id)
            # Re-check under the lock: another worker or process may have refreshed while we waited,
            # or the artist reconnected.
            fresh = self._fresh_token(row)
            if fresh is not None and (used is None or fresh.reveal() != used.reveal()):
                return fresh
            refused = _refused(artist_id, row.sumup_refresh_token)
            if self._memory.has("disconnected", refused):
                # Another worker had this refresh token refused, perhaps while we waited for the lock.
                raise ArtistDisconnected(f"artist {artist_id} must reconnect SumUp (refresh token refused)")
            if fresh is not None and not self._memory.first("refreshed_after_401", artist_id):
                # SumUp refused the stored token, not yet due for renewal, a second time this minute.
                raise _RefreshedRecently()
            if not row.sumup_refresh_token:
                raise self._missing(artist_id, row.name,
                                    f"artist {artist_id} has no SumUp refresh token: they must reconnect")
            if not (self._settings.sumup_client_id and self._settings.sumup_client_secret):
                raise self._missing(artist_id, row.name, "SUMUP_CLIENT_ID and SUMUP_CLIENT_SECRET are needed "
                                    f"to refresh artist {artist_id}'s SumUp token")
            try:
                grant = self._client.refresh_token(Secret(row.sumup_refresh_token), self._settings.sumup_client_id,
                                                   self._settings.sumup_client_secret)
            except InvalidGrant:
                # Noted before the lock is released, so a worker waiting for it does not try again.
                self._memory.first("disconnected", refused)
                raise
            logconfig.register_secret(grant.access_token.reveal())
            logconfig.register_secret(grant.refresh_token.reveal() if grant.refresh_token else None)
            faults.point("after_token_response")
            refresh = grant.refresh_token.reveal() if grant.refresh_token else row.sumup_refresh_token
            tx.run("store_artist_tokens", artist_id=artist_id, access_token=grant.access_token.reveal(),
                   refresh_token=refresh, expires_at=self._clock() + timedelta(seconds=grant.expires_in))
        log.info("sumup.token_refreshed", artist_id=artist_id, expires_in=grant.expires_in)
        return grant.access_token

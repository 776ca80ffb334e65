"""`payverify doctor`: check, one by one, everything a sweep needs, and say what is wrong.

Each check is independent: one that fails does not stop the others; a check that needs a failed
one is skipped with the reason. No message ever contains a secret (keys, tokens, passwords, the
DSN): every message is built from payverify's own exceptions, which are safe to show, and passes
the redactor on its way out as well.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import structlog

from payverify import logconfig
from payverify.config import Settings, load_settings
from payverify.errors import ConfigError, PayverifyError, SchemaMismatch, SumUpUnavailable, TokenRefreshFailed
from payverify.exitcodes import ExitStatus
from payverify.secret import Secret

log = structlog.get_logger("payverify.modes.doctor")

OK, FAIL, SKIP = "ok", "FAIL", "skip"
# A reference no checkout ever has: the request proves the credentials without listing anything.
PROBE_REFERENCE = "payverify-doctor"
# Sent when no platform key is set, only to see whether SumUp answers at all (it answers 401).
_NO_KEY = Secret("payverify-doctor-no-key")

_OAUTH_ARTISTS = {
    "doctor_oauth_artists": (
        "SELECT id, name, sumup_access_token, sumup_refresh_token IS NOT NULL AS refreshable "
        "FROM artists_artist "
        "WHERE sumup_access_token IS NOT NULL OR sumup_refresh_token IS NOT NULL ORDER BY id"),
}


@dataclass(frozen=True)
class Result:
    status: str  # "ok", "FAIL" or "skip"
    check: str
    reason: str
    kind: ExitStatus = ExitStatus.OK  # the command's exit status if this is the first failure

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def line(self) -> str:
        return logconfig.redact(f"{self.status:<4}  {self.check}: {self.reason}")


@dataclass(frozen=True)
class _Artist:
    """What Credentials needs of an order to choose an artist's token (duck-typed Order)."""

    artist_id: int
    artist_name: str
    artist_uses_oauth: bool = True
    sumup_checkout_id: str | None = None


def _printable(text: str, limit: int = 60) -> str:
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def _internal(check: str, kind: ExitStatus, exc: Exception) -> Result:
    log.error("doctor.internal_error", check=check, exc_info=(type(exc), exc, exc.__traceback__))
    return Result(FAIL, check, f"internal error ({type(exc).__name__}); details are in the log file", kind)


class Doctor:
    def __init__(self, config_file: str | None, environ: Mapping[str, str] | None = None) -> None:
        self.config_file = config_file
        self.environ = environ
        self.settings: Settings | None = None
        self.db = None
        self.client = None
        self.site_tables_ok = False
        self.sumup_answers = False

    def run(self) -> Iterator[Result]:
        try:
            yield self._configuration()
            if self.settings is None:
                for name in ("database", "site tables", "payverify schema", "SumUp API", "SumUp platform key",
                             "artists' SumUp tokens", "SMTP"):
                    yield Result(SKIP, name, "configuration could not be read")
                return
            yield self._guard("database", ExitStatus.DATABASE_UNAVAILABLE, self._database)
            yield self._guard("site tables", ExitStatus.SCHEMA, self._site_tables)
            yield self._guard("payverify schema", ExitStatus.SCHEMA, self._schema)
            yield self._guard("SumUp API", ExitStatus.SUMUP_UNAVAILABLE, self._sumup_reachable)
            yield self._guard("SumUp platform key", ExitStatus.SUMUP_UNAVAILABLE, self._platform_key)
            yield from self._artists()
            yield self._guard("SMTP", ExitStatus.ERROR, self._smtp)
        finally:
            if self.client is not None:
                self.client.close()
            if self.db is not None:
                self.db.close()

    @staticmethod
    def _guard(check: str, kind: ExitStatus, step) -> Result:
        try:
            return step(check, kind)
        except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
            return _internal(check, kind, exc)

    # ---- configuration ---------------------------------------------------------------------------
    def _configuration(self) -> Result:
        check = "configuration"
        try:
            settings = load_settings(self.environ, self.config_file)
        except ConfigError as exc:
            logconfig.configure(None, "INFO", [], stderr_level="CRITICAL")
            return Result(FAIL, check, str(exc), ExitStatus.CONFIG)
        self.settings = settings
        missing: list[str] = []
        try:
            # Only the file gets log lines: the doctor's own output is its one line per check.
            logconfig.configure(settings.log_file, settings.log_level, settings.secrets(), stderr_level="CRITICAL")
        except ConfigError as exc:
            logconfig.configure(None, settings.log_level, settings.secrets(), stderr_level="CRITICAL")
            missing.append(str(exc))
        s = settings
        if not s.database_url:
            missing.append("PAYVERIFY_DATABASE_URL is not set")
        if bool(s.sumup_client_id) != bool(s.sumup_client_secret):
            have, lack = (("SUMUP_CLIENT_ID", "SUMUP_CLIENT_SECRET") if s.sumup_client_id
                          else ("SUMUP_CLIENT_SECRET", "SUMUP_CLIENT_ID"))
            missing.append(f"{have} is set without {lack}")
        elif not (s.sumup_api_key or s.sumup_client_id):
            missing.append("neither SUMUP_API_KEY nor the OAuth client (SUMUP_CLIENT_ID, SUMUP_CLIENT_SECRET) is set")
        if not s.smtp_url:
            missing.append("PAYVERIFY_SMTP_URL is not set (mail would wait in the outbox forever)")
        if not s.mail_from:
            missing.append("PAYVERIFY_MAIL_FROM is not set (mail would wait in the outbox forever)")
        if missing:
            more = f"; {'; '.join(missing[1:])}" if len(missing) > 1 else ""
            return Result(FAIL, check, missing[0] + more, ExitStatus.CONFIG)
        source = f"environment and {self.config_file}" if self.config_file else "environment"
        return Result(OK, check, f"complete (from the {source})")

    # ---- database --------------------------------------------------------------------------------
    def _database(self, check: str, kind: ExitStatus) -> Result:
        from payverify.db import Database

        if not self.settings.database_url:
            return Result(SKIP, check, "PAYVERIFY_DATABASE_URL is not set")
        try:
            db = Database.connect(self.settings.database_url, application_name="payverify-doctor",
                                  connect_timeout=5, site_schema=self.settings.site_schema)
        except ConfigError as exc:
            return Result(FAIL, check, str(exc), ExitStatus.CONFIG)
        except PayverifyError as exc:
            return Result(FAIL, check, str(exc), exc.exit_status if isinstance(exc, SchemaMismatch) else kind)
        self.db = db
        try:
            with db.transaction() as tx:
                tx.one("now")
        except PayverifyError as exc:
            return Result(FAIL, check, str(exc), kind)
        return Result(OK, check, "reachable")

    def _site_tables(self, check: str, kind: ExitStatus) -> Result:
        from payverify.db.contract import SITE_COLUMNS, problems, summary

        if self.db is None:
            return Result(SKIP, check, "needs the database")
        try:
            with self.db.transaction() as tx:
                found = problems(tx)
                schema = tx.one("current_schema")["schema"]
        except PayverifyError as exc:
            return Result(FAIL, check, str(exc), kind)
        if found:
            # A few problems are all worth reading at once; a wrong database is one line.
            return Result(FAIL, check, "; ".join(found) if len(found) <= 3 else summary(found), kind)
        self.site_tables_ok = True
        where = "PAYVERIFY_SITE_SCHEMA" if self.settings.site_schema else "the connection's search_path"
        return Result(OK, check, f"match the contract ({len(SITE_COLUMNS)} tables in schema {schema}, from {where})")

    def _schema(self, check: str, kind: ExitStatus) -> Result:
        from payverify.db.migrate import current_version, latest_version, require_current

        if not self.site_tables_ok:
            return Result(SKIP, check, "needs the site's tables")
        try:
            with self.db.transaction() as tx:
                require_current(tx)
                version = current_version(tx)
        except PayverifyError as exc:
            return Result(FAIL, check, str(exc), kind)
        return Result(OK, check, f"current (version {version} of {latest_version()})")

    # ---- SumUp -----------------------------------------------------------------------------------
    def _sumup_reachable(self, check: str, kind: ExitStatus) -> Result:
        from payverify.sumup.client import SumUpClient

        s = self.settings
        # Two quick attempts: a doctor should answer in seconds, not sit out a sweep's backoff.
        self.client = SumUpClient(s.sumup_api_base_url, connect_timeout=s.sumup_connect_timeout,
                                  read_timeout=s.sumup_read_timeout, max_attempts=2, wait=lambda state: 0.5,
                                  user_agent="payverify-doctor")
        self._platform_reply = None
        try:
            reply = self.client.find_checkouts(PROBE_REFERENCE, s.sumup_api_key or _NO_KEY)
        except SumUpUnavailable as exc:
            return Result(FAIL, check, f"{s.sumup_api_base_url} unreachable: {exc}", kind)
        self.sumup_answers = True
        if s.sumup_api_key:
            self._platform_reply = reply
        return Result(OK, check, f"{s.sumup_api_base_url} answers")

    def _platform_key(self, check: str, kind: ExitStatus) -> Result:
        if not self.settings.sumup_api_key:
            return Result(SKIP, check, "SUMUP_API_KEY is not set (only artists' OAuth tokens are used)")
        if self._platform_reply is None:
            return Result(SKIP, check, "needs SumUp to answer")
        status = self._platform_reply.status
        if status == 200:
            return Result(OK, check, "accepted")
        if status == 401:
            return Result(FAIL, check, "platform key refused (HTTP 401): check SUMUP_API_KEY", kind)
        return Result(FAIL, check, f"SumUp answered HTTP {status}: is SUMUP_API_BASE_URL right?", kind)

    def _artists(self) -> Iterator[Result]:
        from payverify.sumup.credentials import ArtistDisconnected, Credentials, MissingCredentials

        check, kind = "artists' SumUp tokens", ExitStatus.SUMUP_UNAVAILABLE
        if not self.site_tables_ok:
            yield Result(SKIP, check, "needs the site's tables")
            return
        if not self.sumup_answers:
            yield Result(SKIP, check, "needs SumUp to answer")
            return
        try:
            with self.db.transaction(_OAUTH_ARTISTS) as tx:
                artists = tx.all("doctor_oauth_artists")
        except PayverifyError as exc:
            yield Result(FAIL, check, str(exc), kind)
            return
        except Exception as exc:  # noqa: BLE001
            yield _internal(check, kind, exc)
            return
        if not artists:
            yield Result(SKIP, check, "no artist has connected SumUp")
            return
        credentials = Credentials(self.settings, self.client, self.db)
        for row in artists:
            logconfig.register_secret(row["sumup_access_token"])
            artist = _Artist(row["id"], row["name"] or "")
            label = f"SumUp token of artist {_printable(artist.artist_name)!r} (id {artist.artist_id})"
            try:
                yield self._artist(label, kind, credentials, artist, row)
            except ArtistDisconnected:
                yield Result(FAIL, label, "SumUp refused the refresh token (invalid_grant): "
                                          "the artist must reconnect SumUp", kind)
            except MissingCredentials as exc:
                yield Result(FAIL, label, str(exc), kind)
            except TokenRefreshFailed as exc:
                yield Result(FAIL, label, f"token refresh failed: {exc}", kind)
            except SumUpUnavailable as exc:
                yield Result(FAIL, label, f"SumUp unreachable: {exc}", kind)
            except PayverifyError as exc:
                yield Result(FAIL, label, str(exc), kind)
            except Exception as exc:  # noqa: BLE001
                yield _internal(label, kind, exc)

    def _artist(self, label: str, kind: ExitStatus, credentials, artist: _Artist, row: dict) -> Result:
        token = credentials.token_for(artist)  # refreshes (and stores the new pair) when expired
        refreshed = token.reveal() != (row["sumup_access_token"] or "")
        reply = self.client.find_checkouts(PROBE_REFERENCE, token)
        if reply.status == 401:
            retry = credentials.after_unauthorized(artist, token)
            if retry is None:
                return Result(FAIL, label, "SumUp refused the token (HTTP 401): the artist must reconnect SumUp",
                              kind)
            refreshed = True
            reply = self.client.find_checkouts(PROBE_REFERENCE, retry)
        if reply.status == 200:
            if refreshed:
                return Result(OK, label, "refreshed; the new token pair is stored")
            tail = "" if row["refreshable"] else " (no refresh token: the artist must reconnect when it expires)"
            return Result(OK, label, "valid" + tail)
        if reply.status == 401:
            return Result(FAIL, label, "SumUp refused the token even after a refresh: the artist must reconnect "
                                       "SumUp", kind)
        return Result(FAIL, label, f"SumUp answered HTTP {reply.status}", kind)

    # ---- SMTP ------------------------------------------------------------------------------------
    def _smtp(self, check: str, kind: ExitStatus) -> Result:
        from payverify.mail.smtp import DeliveryFailed, SmtpTransport, parse_smtp_url

        if not self.settings.smtp_url:
            return Result(SKIP, check, "PAYVERIFY_SMTP_URL is not set")
        config = parse_smtp_url(self.settings.smtp_url, timeout=10.0)
        # host:port, not config.where: a URL without credentials is the secret itself, and redacted.
        where = f"{config.host}:{config.port}"
        try:
            done = SmtpTransport(config).verify()
        except DeliveryFailed as exc:
            return Result(FAIL, check, f"{where}: {exc.reason}", kind)
        return Result(OK, check, f"{where}: {done}")


def run(config_file: str | None, environ: Mapping[str, str] | None = None) -> Iterator[Result]:
    """Every check's result, in order, as soon as it is known."""
    return Doctor(config_file, environ).run()

"""`payverify doctor`: check, one by one, everything a sweep needs, and say what is wrong.

Each check is a small function over the same code a sweep runs (the runtime's connection and SumUp
client, the site contract, Credentials' refresh-and-retry) and declares what it needs: a setting, the
database, the site's tables, SumUp answering. A check whose need is not met is skipped with that
need's reason; one that fails does not stop the others. No message ever contains a secret (keys,
tokens, passwords, the DSN): every message is built from payverify's own exceptions, which are safe
to show, and passes the redactor on its way out as well.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from payverify import logconfig
from payverify.config import Settings, load_settings
from payverify.db import Database
from payverify.db.contract import SITE_COLUMNS, problems, summary
from payverify.db.indexes import site_indexes
from payverify.db.migrate import current_version, latest_version, require_current
from payverify.db.rights import audit
from payverify.errors import (
    ConfigError,
    PayverifyError,
    PermissionDenied,
    SchemaMismatch,
    SumUpUnavailable,
    TokenRefreshFailed,
)
from payverify.exitcodes import ExitStatus
from payverify.mail.sender import missing_mail_settings
from payverify.mail.smtp import DeliveryFailed, SmtpTransport, parse_smtp_url
from payverify.modes.runtime import connect_database, sumup_client
from payverify.secret import Secret
from payverify.sumup.client import Reply, SumUpClient
from payverify.sumup.credentials import (
    ArtistDisconnected,
    Credentials,
    MissingCredentials,
    TokenOwner,
)

log = structlog.get_logger("payverify.modes.doctor")
T = TypeVar("T")

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"
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
    status: str  # "ok", "warn" (works, but worth changing), "FAIL" or "skip"
    check: str
    reason: str
    kind: ExitStatus = ExitStatus.OK  # the command's exit status if this is the first failure

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def line(self) -> str:
        return logconfig.redact(f"{self.status:<4}  {self.check}: {self.reason}")


class Found:
    """What the checks so far have established, for the checks after them."""

    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.db: Database | None = None
        self.client: SumUpClient | None = None
        self.site_tables_ok = False
        self.sumup_answers = False
        self.platform_reply: Reply | None = None  # SumUp's answer to the probe with the platform key

    # What a check needs, for checks whose needs guarantee it is there.
    @property
    def config(self) -> Settings:
        return _needed(self.settings)

    @property
    def database(self) -> Database:
        return _needed(self.db)

    @property
    def sumup(self) -> SumUpClient:
        return _needed(self.client)

    def setting(self, name: str) -> Any:
        return getattr(self.config, name)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.db is not None:
            self.db.close()


def _needed(value: T | None) -> T:
    if value is None:  # a check's needs are meant to make this impossible
        raise RuntimeError("a check ran without what it needs")
    return value


@dataclass(frozen=True)
class Need:
    """A precondition of a check, and the skip reason when it is not met."""

    met: Callable[[Found], bool]
    reason: str


CONFIGURATION = Need(lambda f: f.settings is not None, "configuration could not be read")
DATABASE = Need(lambda f: f.db is not None, "needs the database")
SITE_TABLES = Need(lambda f: f.site_tables_ok, "needs the site's tables")
SUMUP = Need(lambda f: f.sumup_answers, "needs SumUp to answer")


def needs_setting(name: str, reason: str) -> Need:
    return Need(lambda f: bool(f.setting(name)), reason)


@dataclass(frozen=True)
class Line:
    """A line of output: its name, and the exit status it gives the command when it is a failure."""

    name: str
    kind: ExitStatus

    def fail(self, reason: str, kind: ExitStatus | None = None) -> Result:
        return Result(FAIL, self.name, reason, self.kind if kind is None else kind)

    def ok(self, reason: str) -> Result:
        return Result(OK, self.name, reason)


@dataclass(frozen=True)
class Check(Line):
    """One check: its line(s) come from `run` (the artists' check gives one per artist), unless one
    of its needs, tried in order, is not met."""

    run: Callable[[Found, Check], Result | Iterable[Result]]
    needs: tuple[Need, ...] = (CONFIGURATION,)

    def results(self, found: Found) -> Iterator[Result]:
        unmet = next((need for need in self.needs if not need.met(found)), None)
        if unmet is not None:
            yield Result(SKIP, self.name, unmet.reason)
            return
        try:
            outcome = self.run(found, self)
            yield from [outcome] if isinstance(outcome, Result) else outcome
        except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
            yield _internal(self.name, self.kind, exc)


def _printable(text: str, limit: int = 60) -> str:
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def _internal(check: str, kind: ExitStatus, exc: Exception) -> Result:
    log.error("doctor.internal_error", check=check, exc_info=(type(exc), exc, exc.__traceback__))
    return Result(FAIL, check, f"internal error ({type(exc).__name__}); details are in the log file", kind)


# ---- configuration -------------------------------------------------------------------------------
def _configure_logging(settings: Settings) -> str | None:
    """Only the log file gets log lines: the doctor's own output is its one line per check.
    Returns why the log file cannot be used, if it cannot."""
    try:
        logconfig.configure(settings.log_file, settings.log_level, settings.secrets(), stderr_level="CRITICAL")
    except ConfigError as exc:
        logconfig.configure(None, settings.log_level, settings.secrets(), stderr_level="CRITICAL")
        return str(exc)
    return None


def _incomplete(s: Settings) -> list[str]:
    """What a sweep would lack: a database, a way to authenticate to SumUp, a way to send mail."""
    missing = [] if s.database_url else ["PAYVERIFY_DATABASE_URL is not set"]
    if bool(s.sumup_client_id) != bool(s.sumup_client_secret):
        have, lack = (("SUMUP_CLIENT_ID", "SUMUP_CLIENT_SECRET") if s.sumup_client_id
                      else ("SUMUP_CLIENT_SECRET", "SUMUP_CLIENT_ID"))
        missing.append(f"{have} is set without {lack}")
    elif not (s.sumup_api_key or s.sumup_client_id):
        missing.append("neither SUMUP_API_KEY nor the OAuth client (SUMUP_CLIENT_ID, SUMUP_CLIENT_SECRET) is set")
    return missing + [f"{m} (mail would wait in the outbox forever)" for m in missing_mail_settings(s)]


def _configuration(config_file: str | None, environ: Mapping[str, str] | None) -> Check:
    def run(found: Found, check: Check) -> Result:
        try:
            settings = load_settings(environ, config_file)
        except ConfigError as exc:
            logconfig.configure(None, "INFO", [], stderr_level="CRITICAL")
            return check.fail(str(exc))
        found.settings = settings
        unusable_log = _configure_logging(settings)
        missing = ([unusable_log] if unusable_log else []) + _incomplete(settings)
        if missing:
            return check.fail("; ".join(missing))
        source = f"environment and {config_file}" if config_file else "environment"
        return check.ok(f"complete (from the {source})")

    return Check("configuration", ExitStatus.CONFIG, run, needs=())


# ---- database ------------------------------------------------------------------------------------
def _database(found: Found, check: Check) -> Result:
    try:
        found.db = connect_database(found.config, application_name="payverify-doctor", connect_timeout=5)
    except ConfigError as exc:
        return check.fail(str(exc), ExitStatus.CONFIG)
    except PayverifyError as exc:
        return check.fail(str(exc), exc.exit_status if isinstance(exc, SchemaMismatch) else None)
    try:
        with found.database.transaction() as tx:
            tx.one("now")
    except PayverifyError as exc:
        return check.fail(str(exc))
    return check.ok("reachable")


def _site_tables(found: Found, check: Check) -> Result:
    try:
        with found.database.transaction() as tx:
            found_problems = problems(tx)
            schema = _needed(tx.one("current_schema"))["schema"]
    except PayverifyError as exc:
        return check.fail(str(exc))
    if found_problems:
        # A few problems are all worth reading at once; a wrong database is one line.
        return check.fail("; ".join(found_problems) if len(found_problems) <= 3 else summary(found_problems))
    found.site_tables_ok = True
    where = "PAYVERIFY_SITE_SCHEMA" if found.setting("site_schema") else "the connection's search_path"
    return check.ok(f"match the contract ({len(SITE_COLUMNS)} tables in schema {schema}, from {where})")


def _site_indexes(found: Found, check: Check) -> Iterator[Result]:
    """The indexes payverify's queries need on the site's tables: a warning, never a failure."""
    for state in site_indexes(found.database):
        where = f"{state.table}.{state.column}"
        if state.index is not None:
            yield check.ok(f"{where} is indexed ({state.index})")
        elif state.is_view:
            yield Result(SKIP, check.name, f"{state.table} is a view: make sure the column behind {where} "
                                           "is indexed in its table")
        else:
            yield Result(WARN, check.name, (
                f"{where} has no index, so every sweep and every watch poll reads the whole table; ask the "
                f"site's team to run {state.create_statement} (Django: db_index=True on the field, or "
                f'Meta.indexes = [models.Index(fields=["{state.column}"])])'))


def _schema(found: Found, check: Check) -> Result:
    try:
        with found.database.transaction() as tx:
            require_current(tx)
            version = current_version(tx)
    except PayverifyError as exc:
        # Unreadable version table: the user's rights are the trouble (exit 3), not the schema.
        return check.fail(str(exc), exc.exit_status if isinstance(exc, PermissionDenied) else None)
    return check.ok(f"current (version {version} of {latest_version()})")


def _rights(found: Found, check: Check) -> Result:
    """What the database user may do, against what `db grants` gives."""
    try:
        rights = audit(found.database)
    except SchemaMismatch as exc:  # no payverify tables yet: the schema check has said so
        return Result(SKIP, check.name, str(exc))
    except PayverifyError as exc:
        return check.fail(str(exc))
    user = f"user {_printable(rights.username)}"
    if rights.missing:
        more = f" (and {len(rights.missing) - 3} more)" if len(rights.missing) > 3 else ""
        return check.fail(f"{user} lacks {', '.join(rights.missing[:3])}{more}: apply `payverify db grants ROLE` "
                          "as the owner")
    if rights.too_much:
        return Result(WARN, check.name, f"{user} {rights.too_much}; payverify needs much less: give it its own "
                                        "role with `payverify db grants ROLE`")
    return check.ok(f"{user} has every right payverify needs, and is not a superuser, the owner of the "
                    "site's tables or able to DELETE from them")


# ---- SumUp ---------------------------------------------------------------------------------------
def _sumup_reachable(found: Found, check: Check) -> Result:
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


def _platform_key(found: Found, check: Check) -> Result:
    status = _needed(found.platform_reply).status
    if status == 200:
        return check.ok("accepted")
    if status == 401:
        return check.fail("platform key refused (HTTP 401): check SUMUP_API_KEY")
    return check.fail(f"SumUp answered HTTP {status}: is SUMUP_API_BASE_URL right?")


def _artists(found: Found, check: Check) -> Iterator[Result]:
    try:
        with found.database.transaction(_OAUTH_ARTISTS) as tx:
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
        label = f"SumUp token of artist {_printable(owner.artist_name)!r} (id {owner.artist_id})"
        yield _guarded_artist(Line(label, check.kind), found.sumup, credentials, owner, row)


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
        return _internal(line.name, line.kind, exc)


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


# ---- SMTP ----------------------------------------------------------------------------------------
def _smtp(found: Found, check: Check) -> Result:
    config = parse_smtp_url(found.setting("smtp_url"), timeout=10.0)
    # host:port, not config.where: a URL without credentials is the secret itself, and redacted.
    where = f"{config.host}:{config.port}"
    try:
        done = SmtpTransport(config).verify()
    except DeliveryFailed as exc:
        return check.fail(f"{where}: {exc.reason}")
    return check.ok(f"{where}: {done}")


def checks(config_file: str | None, environ: Mapping[str, str] | None = None) -> tuple[Check, ...]:
    """Every check, in the order they run and print."""
    sumup, schema = ExitStatus.SUMUP_UNAVAILABLE, ExitStatus.SCHEMA
    database_url = needs_setting("database_url", "PAYVERIFY_DATABASE_URL is not set")
    api_key = needs_setting("sumup_api_key", "SUMUP_API_KEY is not set (only artists' OAuth tokens are used)")
    smtp_url = needs_setting("smtp_url", "PAYVERIFY_SMTP_URL is not set")
    return (
        _configuration(config_file, environ),
        Check("database", ExitStatus.DATABASE_UNAVAILABLE, _database, (CONFIGURATION, database_url)),
        Check("site tables", schema, _site_tables, (CONFIGURATION, DATABASE)),
        Check("site indexes", schema, _site_indexes, (CONFIGURATION, SITE_TABLES)),
        Check("payverify schema", schema, _schema, (CONFIGURATION, SITE_TABLES)),
        Check("database rights", ExitStatus.CONFIG, _rights, (CONFIGURATION, SITE_TABLES)),
        Check("SumUp API", sumup, _sumup_reachable),
        Check("SumUp platform key", sumup, _platform_key, (CONFIGURATION, api_key, SUMUP)),
        Check("artists' SumUp tokens", sumup, _artists, (CONFIGURATION, SITE_TABLES, SUMUP)),
        Check("SMTP", ExitStatus.ERROR, _smtp, (CONFIGURATION, smtp_url)),
    )


def run(config_file: str | None, environ: Mapping[str, str] | None = None) -> Iterator[Result]:
    """Every check's result, in order, as soon as it is known."""
    found = Found()
    try:
        for check in checks(config_file, environ):
            yield from check.results(found)
    finally:
        found.close()

"""Configuration: environment variables, optionally a TOML file (`--config` / PAYVERIFY_CONFIG).

The environment wins over the file. The TOML file uses the same names as the environment, as
top-level keys (`PAYVERIFY_DATABASE_URL = "postgresql://..."`). Every error names the variable.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from payverify.errors import ConfigError
from payverify.hosts import is_loopback
from payverify.secret import Secret

DEFAULT_SUMUP_API_BASE_URL = "https://api.sumup.com"
DEFAULT_ALERT_EMAIL = "alerts@coderra.je"


@dataclass(frozen=True, kw_only=True)
class Policy:
    """The decision's tunables (DESIGN.md), in minutes/hours as configured."""

    max_age_hours: float = 2.0
    failed_grace_minutes: float = 30.0
    rescue_hours: float = 24.0
    stuck_minutes: float = 30.0


@dataclass(frozen=True, kw_only=True)
class Settings:
    database_url: Secret | None = None
    listen_database_url: Secret | None = None  # watch's LISTEN, when database_url goes through a pooler
    # The Postgres schema holding the site's tables (or views standing for them); None: search_path.
    site_schema: str | None = None
    sumup_api_base_url: str = DEFAULT_SUMUP_API_BASE_URL
    sumup_api_key: Secret | None = None
    sumup_client_id: str | None = None
    sumup_client_secret: Secret | None = None
    smtp_url: Secret | None = None
    mail_from: str | None = None
    alert_email: str = DEFAULT_ALERT_EMAIL
    site_url: str | None = None
    site_name: str | None = None
    timezone: str = "Europe/Jersey"
    templates_dir: str | None = None
    policy: Policy = field(default_factory=Policy)
    max_orders_per_run: int = 2500
    time_budget_seconds: float = 240.0
    concurrency: int = 8
    smtp_connections: int = 2
    watch_interval: float = 1.0
    sumup_rate: float = 10.0
    sumup_connect_timeout: float = 5.0
    sumup_read_timeout: float = 15.0
    db_statement_timeout_ms: int = 30_000
    db_lock_timeout_ms: int = 10_000
    log_file: str = "logs/payment_polling.log"
    log_level: str = "INFO"
    # healthchecks.io-style ping URL: whoever knows it can ping, so it is kept like a secret.
    heartbeat_url: Secret | None = None
    metrics_file: str | None = None
    # payverify's own audit, run and done-mail rows older than this are pruned (modes/retention.py).
    retention_days: int = 90

    @property
    def display_site_name(self) -> str:
        """The brand in mail: PAYVERIFY_SITE_NAME, else the site's host name."""
        if self.site_name:
            return self.site_name
        host = urlsplit(self.site_url).hostname if self.site_url else None
        return host or "Tickets"

    @property
    def alert_recipients(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in self.alert_email.split(",") if a.strip())

    def secrets(self) -> list[str]:
        """Every secret value, for the log redactor (defence in depth: they should never be logged)."""
        values = [s.reveal() for s in (self.database_url, self.listen_database_url, self.sumup_api_key,
                                        self.sumup_client_secret, self.smtp_url, self.heartbeat_url) if s]
        for url in (self.database_url, self.listen_database_url, self.smtp_url):
            password = _url_password(url.reveal()) if url else None
            if password:
                values.append(password)
        return [v for v in values if len(v) >= 4]


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _text(value: str) -> str:
    return value


def _secret(value: str) -> Secret:
    return Secret(value)


def _heartbeat_url(value: str) -> Secret:
    """A ping URL (https://hc-ping.com/<uuid>): whoever reads it can ping, so https (plain http on
    loopback only, for a local test server), kept as a Secret."""
    url = _api_url(value)  # the error names the variable, never the value
    return _secret(url)


def _schema_name(value: str) -> str:
    """A Postgres schema name as written in the catalogue (case matters; it is quoted, never interpolated)."""
    if len(value.encode()) > 63 or any(ord(c) < 32 for c in value):
        raise ValueError("must be a Postgres schema name (at most 63 bytes, no control characters)")
    return value


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError("must be greater than 0")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError("must be a whole number greater than 0")
    return number


def _concurrency(value: str) -> int:
    number = _positive_int(value)
    if number > 64:
        raise ValueError("must be at most 64 (each worker holds a database connection)")
    return number


def _smtp_connections(value: str) -> int:
    number = _positive_int(value)
    if number > 16:
        raise ValueError("must be at most 16 (each holds an SMTP session and a database connection)")
    return number


# A cutoff further back than this is no retention at all, and past it the database's dates run out.
MAX_RETENTION_DAYS = 36_500


def _retention_days(value: str) -> int:
    number = _positive_int(value)
    if number > MAX_RETENTION_DAYS:
        raise ValueError(f"must be at most {MAX_RETENTION_DAYS} days")
    return number


def _rate(value: str) -> float:
    number = float(value)
    if not number >= 0 or number == float("inf"):
        raise ValueError("must be a number of requests per second, 0 for no limit")
    return number


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


def _api_url(value: str) -> str:
    """Secrets travel to this URL (bearer tokens, the client secret, the ping URL itself): https, or
    plain http on loopback only."""
    url = _http_url(value)
    if urlsplit(url).scheme == "http" and not is_loopback(urlsplit(url).hostname):
        raise ValueError("must be an https:// URL (plain http:// only on this machine: localhost, 127.0.0.1, ::1)")
    return url


def _timezone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Jersey)") from None
    return value


def _mail_from(value: str) -> str:
    """`addr` or `Name <addr>`: checked now, so a typo stops the run instead of failing every mail."""
    from payverify.addresses import BadAddress, sender_address

    try:
        sender_address(value, "")
    except BadAddress:
        raise ValueError("must be one address, e.g. tickets@example.com or \"Tickets <tickets@example.com>\"") from None
    return value


def _address_list(value: str) -> str:
    from payverify.addresses import BadAddress, address

    addresses = [a.strip() for a in value.split(",") if a.strip()]
    try:
        for item in addresses:
            address(item)
    except BadAddress:
        raise ValueError("must be one or more addresses separated by commas") from None
    if not addresses:
        raise ValueError("must name at least one address")
    return ", ".join(addresses)


def _smtp_url(value: str) -> Secret:
    from payverify.smtp_url import parse_smtp_url

    secret = Secret(value)
    parse_smtp_url(secret)  # raises ConfigError naming the variable
    return secret


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return level


# variable name -> (settings field, parser). Policy fields are prefixed "policy.".
VARIABLES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "PAYVERIFY_DATABASE_URL": ("database_url", _secret),
    "PAYVERIFY_LISTEN_DATABASE_URL": ("listen_database_url", _secret),
    "PAYVERIFY_SITE_SCHEMA": ("site_schema", _schema_name),
    "SUMUP_API_BASE_URL": ("sumup_api_base_url", _api_url),
    "SUMUP_API_KEY": ("sumup_api_key", _secret),
    "SUMUP_CLIENT_ID": ("sumup_client_id", _text),
    "SUMUP_CLIENT_SECRET": ("sumup_client_secret", _secret),
    "PAYVERIFY_SMTP_URL": ("smtp_url", _smtp_url),
    "PAYVERIFY_MAIL_FROM": ("mail_from", _mail_from),
    "PAYVERIFY_ALERT_EMAIL": ("alert_email", _address_list),
    "PAYVERIFY_SITE_URL": ("site_url", _http_url),
    "PAYVERIFY_SITE_NAME": ("site_name", _text),
    "PAYVERIFY_TIMEZONE": ("timezone", _timezone),
    "PAYVERIFY_TEMPLATES_DIR": ("templates_dir", _text),
    "PAYVERIFY_MAX_AGE_HOURS": ("policy.max_age_hours", _positive_float),
    "PAYVERIFY_FAILED_GRACE_MINUTES": ("policy.failed_grace_minutes", _positive_float),
    "PAYVERIFY_RESCUE_HOURS": ("policy.rescue_hours", _positive_float),
    "PAYVERIFY_STUCK_MINUTES": ("policy.stuck_minutes", _positive_float),
    "PAYVERIFY_MAX_ORDERS_PER_RUN": ("max_orders_per_run", _positive_int),
    "PAYVERIFY_TIME_BUDGET": ("time_budget_seconds", _positive_float),
    "PAYVERIFY_CONCURRENCY": ("concurrency", _concurrency),
    "PAYVERIFY_SMTP_CONNECTIONS": ("smtp_connections", _smtp_connections),
    "PAYVERIFY_WATCH_INTERVAL": ("watch_interval", _positive_float),
    "PAYVERIFY_SUMUP_RATE": ("sumup_rate", _rate),
    "PAYVERIFY_SUMUP_CONNECT_TIMEOUT": ("sumup_connect_timeout", _positive_float),
    "PAYVERIFY_SUMUP_READ_TIMEOUT": ("sumup_read_timeout", _positive_float),
    "PAYVERIFY_DB_STATEMENT_TIMEOUT_MS": ("db_statement_timeout_ms", _positive_int),
    "PAYVERIFY_DB_LOCK_TIMEOUT_MS": ("db_lock_timeout_ms", _positive_int),
    "PAYVERIFY_LOG_FILE": ("log_file", _text),
    "PAYVERIFY_LOG_LEVEL": ("log_level", _log_level),
    "PAYVERIFY_HEARTBEAT_URL": ("heartbeat_url", _heartbeat_url),
    "PAYVERIFY_METRICS_FILE": ("metrics_file", _text),
    "PAYVERIFY_RETENTION_DAYS": ("retention_days", _retention_days),
}


def load_settings(environ: Mapping[str, str] | None = None, config_file: str | None = None) -> Settings:
    """Build Settings from the TOML file (if any) overlaid by the environment."""
    top: dict[str, Any] = {}
    policy: dict[str, Any] = {}
    for name, (value, _source) in _effective(environ, config_file).items():
        target, parse = VARIABLES[name]
        try:
            parsed = parse(value)
        except ValueError as exc:
            detail = str(exc)
            if detail.startswith(("could not convert", "invalid literal")):
                detail = "is not a number"
            raise ConfigError(f"{name}: {detail}") from None
        in_policy, field_name = _field(target)
        (policy if in_policy else top)[field_name] = parsed
    return Settings(policy=Policy(**policy), **top)


def sources(environ: Mapping[str, str] | None = None, config_file: str | None = None) -> dict[str, str]:
    """Where each variable's effective value comes from, in VARIABLES order: "environment",
    "file <path>" or "default" (the same precedence as load_settings: a blank variable is unset)."""
    effective = _effective(environ, config_file)
    return {name: effective[name][1] if name in effective else "default" for name in VARIABLES}


def value_of(settings: Settings, name: str) -> Any:
    """The value of variable `name` in `settings` (a Policy field for the policy's variables)."""
    in_policy, field_name = _field(VARIABLES[name][0])
    return getattr(settings.policy if in_policy else settings, field_name)


def _field(target: str) -> tuple[bool, str]:
    """A VARIABLES target: whether it is a Policy field (prefixed "policy."), and the field's name."""
    field_name = target.removeprefix("policy.")
    return field_name != target, field_name


def _effective(environ: Mapping[str, str] | None, config_file: str | None) -> dict[str, tuple[str, str]]:
    """Each variable that is set: its raw value and its source ("environment" or "file <path>").
    The environment wins over the file; a blank environment variable is unset."""
    environ = os.environ if environ is None else environ
    path = config_file or environ.get("PAYVERIFY_CONFIG")
    found = {name: (value, f"file {path}") for name, value in (_read_toml(path) if path else {}).items()}
    for name in VARIABLES:
        value = environ.get(name)
        if value is not None and value.strip() != "":
            found[name] = (value.strip(), "environment")
    return found


def _read_toml(path: str) -> dict[str, str]:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"configuration file {path} cannot be read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
    values: dict[str, str] = {}
    for key, value in data.items():
        if key not in VARIABLES:
            raise ConfigError(f"configuration file {path}: unknown setting {key}")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ConfigError(f"configuration file {path}: {key} must be a string or a number")
        values[key] = str(value)
    return values


def require_database_url(settings: Settings) -> Secret:
    if not settings.database_url:
        raise ConfigError("PAYVERIFY_DATABASE_URL is not set (a libpq URL or DSN of the site's database)")
    return settings.database_url

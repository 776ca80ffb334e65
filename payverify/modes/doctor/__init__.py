"""`payverify doctor`: check, one by one, everything a sweep needs, and say what is wrong.

The checks run in order (configuration, database, SumUp, SMTP: database.py and sumup.py hold the
longer ones) over the same code a sweep runs. No message ever contains a secret (keys, tokens,
passwords, the DSN): every message is built from payverify's own exceptions, which are safe to show,
and passes the redactor on its way out as well.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from payverify import logconfig
from payverify.config import Settings, load_settings
from payverify.errors import ConfigError
from payverify.exitcodes import ExitStatus
from payverify.mail.sender import missing_mail_settings
from payverify.mail.smtp import DeliveryFailed, SmtpTransport, parse_smtp_url
from payverify.modes.doctor.database import (
    check_database,
    check_database_transport,
    check_pooler,
    check_rights,
    check_schema,
    check_site_indexes,
    check_site_tables,
)
from payverify.modes.doctor.framework import (
    CONFIGURATION,
    DATABASE,
    SITE_TABLES,
    SUMUP,
    Check,
    Found,
    Result,
    needed,
    needs_setting,
)
from payverify.modes.doctor.sumup import check_artists, check_platform_key, check_sumup_api

__all__ = ["Result", "checks", "run"]


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


def _smtp(found: Found, check: Check) -> Result:
    config = parse_smtp_url(needed(found.config.smtp_url), timeout=10.0)
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
        Check("database", ExitStatus.DATABASE_UNAVAILABLE, check_database, (CONFIGURATION, database_url)),
        Check("database transport", ExitStatus.DATABASE_UNAVAILABLE, check_database_transport,
              (CONFIGURATION, DATABASE)),
        Check("database pooler", ExitStatus.DATABASE_UNAVAILABLE, check_pooler, (CONFIGURATION, DATABASE)),
        Check("site tables", schema, check_site_tables, (CONFIGURATION, DATABASE)),
        Check("site indexes", schema, check_site_indexes, (CONFIGURATION, SITE_TABLES)),
        Check("payverify schema", schema, check_schema, (CONFIGURATION, SITE_TABLES)),
        Check("database rights", ExitStatus.CONFIG, check_rights, (CONFIGURATION, SITE_TABLES)),
        Check("SumUp API", sumup, check_sumup_api),
        Check("SumUp platform key", sumup, check_platform_key, (CONFIGURATION, api_key, SUMUP)),
        Check("artists' SumUp tokens", sumup, check_artists, (CONFIGURATION, SITE_TABLES, SUMUP)),
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

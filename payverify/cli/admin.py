"""Commands for the person installing or on call: `doctor` and `config`. Each docstring is its --help."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote, urlsplit

import click

from payverify.cli.commands import cli
from payverify.exitcodes import ExitStatus
from payverify.secret import Secret

MASK = "***"
# What an unset variable means, where that is not simply "none".
_UNSET = {"PAYVERIFY_SITE_SCHEMA": "the site's tables are found through the connection's search_path"}
_URL_SCHEMES = ("postgresql", "postgres", "smtp", "smtps")


@cli.command()
@click.pass_obj
def doctor(config_file) -> int:
    """Check everything payverify needs, one line per check: ok, warn, FAIL or skip, and why.

    In order: configuration complete (database URL; SUMUP_API_KEY or the OAuth client; SMTP URL and
    sender, since without them mail waits forever); database reachable; whether a pooler (PgBouncer)
    stands in front of it, that the per-transaction timeouts and time zone hold, and whether watch
    hears NOTIFY or polls; the site's tables match the
    contract; the site's indexes payverify's queries need (warn, with the CREATE INDEX statement for
    the site's team, when orders_order.status has none); payverify's schema current; the database
    user's rights (FAIL when it lacks one that `payverify db grants` gives; warn when it could do far
    more: a superuser, the owner of the site's tables, or table-wide rights such as DELETE on them);
    SumUp reachable; the platform key accepted; each artist's OAuth token valid or refreshable (the
    artist is named, never the token); SMTP reachable, with STARTTLS for smtp:// and login. A check
    that needs a failed one is skipped. No secret is printed.

    An expired artist token is refreshed, exactly as a sweep would: SumUp rotates the refresh token,
    so the new pair is stored at once (not storing it would lock the artist out).

    Exit 0 when no check failed (a warning does not fail); otherwise the status of the first
    failure: 3 configuration or the database user's rights,
    4 database unreachable, 5 site tables or payverify's schema, 7 SumUp or an artist's token,
    1 SMTP.

    \b
    Example:
      payverify doctor
      payverify --config /etc/payverify.toml doctor
    """
    from payverify.modes.doctor import run

    first_failure: ExitStatus | None = None
    for result in run(config_file):
        click.echo(result.line())
        if result.failed and first_failure is None:
            first_failure = result.exit_status
    return first_failure if first_failure is not None else ExitStatus.OK


@cli.command("config")
@click.option("--json", "as_json", is_flag=True, help="Print the configuration as JSON.")
@click.pass_obj
def show_config(config_file, as_json) -> int:
    """Show the effective configuration and where each value came from.

    One line per variable: its value and its source (the environment, the TOML file, or the
    default). Secrets are shown as ***; the database and SMTP URLs are shown with only their
    password masked. A bad value stops with exit 3 and a line naming the variable.

    \b
    Example:
      payverify config
      payverify --config /etc/payverify.toml config --json
    """
    from payverify.config import VARIABLES, load_settings, sources, value_of

    settings = load_settings(config_file=config_file)
    origin = sources(config_file=config_file)
    shown: dict[str, dict[str, Any]] = {}
    for name in VARIABLES:
        value = _display(value_of(settings, name))
        source = origin[name]
        entry: dict[str, Any] = {"value": value, "source": source.split(" ", 1)[0]}
        if source.startswith("file "):
            entry["file"] = source.removeprefix("file ")
        shown[name] = entry
    if as_json:
        click.echo(json.dumps(shown, indent=2))
        return ExitStatus.OK
    for name, entry in shown.items():
        if entry["value"] is None:
            meaning = _UNSET.get(name)
            click.echo(f"{name} = (not set{': ' + meaning if meaning else ''})")
            continue
        where = {"environment": "from environment", "default": "default"}.get(entry["source"])
        where = where or f"from file {entry['file']}"
        click.echo(f"{name} = {entry['value']}  ({where})")
    return ExitStatus.OK


def _display(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Secret):
        return masked_url(value.reveal()) if value else None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (int, float)):
        return value
    return str(value)


def masked_url(value: str) -> str:
    """A postgres/smtp URL with only its password masked; "***" for anything else, or whenever the
    result would still contain the password (a DSN in key=value form, odd URLs, short passwords)."""
    try:
        parts = urlsplit(value)
        password = parts.password
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number (multi-host URLs)
    except ValueError:
        return MASK
    if parts.scheme not in _URL_SCHEMES or not parts.hostname or parts.fragment:
        return MASK
    hidden = [password, unquote(password)] if password else []
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{hostport}"
    query = []
    for piece in parts.query.split("&") if parts.query else []:
        key, eq, val = piece.partition("=")
        if "pass" in unquote(key).lower() or "secret" in unquote(key).lower():
            hidden += [val, unquote(val)]
            piece = f"{key}={MASK}" if eq else key
        query.append(piece)
    shown = f"{parts.scheme}://{netloc}{parts.path}" + (f"?{'&'.join(query)}" if query else "")
    if any(secret and secret in shown for secret in hidden):
        return MASK
    return shown

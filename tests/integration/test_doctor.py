"""`payverify doctor` and `payverify config`: real processes, real Postgres, the SumUp simulator, real SMTP."""

from __future__ import annotations

import json
import socket
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from payverify.config import VARIABLES
from payverify.db import Database
from payverify.exitcodes import ExitStatus
from payverify.secret import Secret
from payverify_dev.seed import PLATFORM_KEY, PLATFORM_MERCHANT, outside_transaction
from payverify_dev.smtp_capture import SmtpCapture
from tests.helpers import rows

SMTP_USER, SMTP_PASSWORD = "mailer", "Sm7pDoctorCanaryPw"
DSN_PASSWORD = "DsnDoctorCanary4471"
CLIENT_SECRET_CANARY = "ClientSecretCanary5512"
API_KEY_CANARY = "sup_sk_ApiKeyCanary8830"


def lines(result) -> dict[str, tuple[str, str]]:
    """stdout of `doctor` as {check: (status, reason)}."""
    found = {}
    for line in result.stdout.splitlines():
        status, rest = line.split(None, 1)
        check, _, reason = rest.partition(": ")
        found[check] = (status, reason)
    return found


def statuses(result) -> dict[str, str]:
    return {check: status for check, (status, _) in lines(result).items()}


def artist_line(result, name: str, artist_id: int) -> tuple[str, str]:
    matches = [v for k, v in lines(result).items() if name in k and f"id {artist_id}" in k]
    assert len(matches) == 1, result.stdout
    return matches[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tokens(db, artist_id):
    return rows(db, "SELECT sumup_access_token AS access, sumup_refresh_token AS refresh "
                    "FROM artists_artist WHERE id = %(id)s", id=artist_id)[0]


@pytest.fixture(autouse=True)
def platform_key(sumup):
    """The simulator knows the platform key of the `env` fixture (as the seed fixture would arrange)."""
    sumup.add_api_key(PLATFORM_KEY, PLATFORM_MERCHANT)


@pytest.fixture
def tls_smtp(tls_server):
    """An SMTP server that requires STARTTLS (certificate from the test CA) and a login."""
    with SmtpCapture(tls_context=tls_server, require_starttls=True, login=(SMTP_USER, SMTP_PASSWORD)) as server:
        yield server


@pytest.fixture
def dsn_with_password(pg_url, database_url):
    """The test database's URL as a throwaway role with a password (works under trust and scram alike)."""
    role = f"pv_doc_{uuid.uuid4().hex[:8]}"
    with Database.connect(Secret(pg_url)) as admin:
        admin._conn.autocommit = True
        with admin._conn.cursor() as cur:
            cur.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{DSN_PASSWORD}'")
    parts = urlsplit(database_url)
    hostport = parts.netloc.rpartition("@")[2]
    yield urlunsplit((parts.scheme, f"{role}:{DSN_PASSWORD}@{hostport}", parts.path, parts.query, parts.fragment))
    with Database.connect(Secret(pg_url)) as admin:
        admin._conn.autocommit = True
        with admin._conn.cursor() as cur:
            cur.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
            cur.execute(f"DROP ROLE IF EXISTS {role}")


def test_healthy_setup_is_all_ok(seed, run_payverify):
    """With the database, the simulator and the mail capture all working, every check says ok and exit is 0."""
    seed.artist("Platform Pat")
    olive = seed.artist("Oauth Olive", oauth=True)
    result = run_payverify("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    found = statuses(result)
    for check in ("configuration", "database", "database pooler", "site tables", "payverify schema",
                  "database rights", "SumUp API", "SumUp platform key", "SMTP"):
        assert found.get(check) == "ok", result.stdout
    assert "a direct connection to Postgres (no pooler)" in result.stdout
    assert artist_line(result, "Oauth Olive", olive.id) == ("ok", "valid")
    assert set(found.values()) == {"ok"}, result.stdout
    assert "Platform Pat" not in result.stdout  # only artists with OAuth tokens have a token to check
    assert result.stderr == ""


def test_platform_key_refused(run_payverify):
    """A platform key SumUp refuses is a FAIL line and exit 7; the other checks still run."""
    result = run_payverify("doctor", extra_env={"SUMUP_API_KEY": "sup_sk_wrong_key"})
    assert result.returncode == ExitStatus.SUMUP_UNAVAILABLE, result.stdout
    status, reason = lines(result)["SumUp platform key"]
    assert status == "FAIL" and "platform key refused" in reason
    assert statuses(result)["SumUp API"] == "ok"
    assert statuses(result)["SMTP"] == "ok"
    assert "sup_sk_wrong_key" not in result.stdout + result.stderr


def test_sumup_unreachable(run_payverify):
    """Nothing listening at the SumUp URL: the API check fails (exit 7) and what needs SumUp is skipped."""
    result = run_payverify("doctor", extra_env={"SUMUP_API_BASE_URL": f"http://127.0.0.1:{free_port()}"})
    assert result.returncode == ExitStatus.SUMUP_UNAVAILABLE
    found = lines(result)
    assert found["SumUp API"][0] == "FAIL" and "unreachable" in found["SumUp API"][1]
    assert found["SumUp platform key"][0] == "skip"
    assert found["database"][0] == "ok" and found["SMTP"][0] == "ok"


def test_smtp_server_down(run_payverify):
    """Nothing listening at the SMTP URL: a FAIL line for SMTP and exit 1, everything else ok."""
    result = run_payverify("doctor", extra_env={"PAYVERIFY_SMTP_URL": f"smtp://127.0.0.1:{free_port()}"})
    assert result.returncode == ExitStatus.ERROR
    found = statuses(result)
    assert found["SMTP"] == "FAIL"
    assert [c for c, s in found.items() if s == "FAIL"] == ["SMTP"], result.stdout


def test_missing_smtp_settings_fail_the_configuration(run_payverify):
    """No SMTP URL is a configuration FAIL (mail would wait forever): exit 3, the SMTP check skipped."""
    result = run_payverify("doctor", extra_env={"PAYVERIFY_SMTP_URL": ""})
    assert result.returncode == ExitStatus.CONFIG
    status, reason = lines(result)["configuration"]
    assert status == "FAIL" and "PAYVERIFY_SMTP_URL" in reason
    assert statuses(result)["SMTP"] == "skip"
    assert statuses(result)["database"] == "ok"


def test_database_without_site_tables(run_payverify, empty_database_url):
    """A database without the site's tables fails the contract check (exit 5); checks needing it are skipped."""
    result = run_payverify("doctor", extra_env={"PAYVERIFY_DATABASE_URL": empty_database_url})
    assert result.returncode == ExitStatus.SCHEMA, result.stdout
    found = lines(result)
    assert found["database"][0] == "ok"
    assert found["site tables"][0] == "FAIL" and "artists_artist" in found["site tables"][1]
    assert found["payverify schema"][0] == "skip"
    assert found["artists' SumUp tokens"][0] == "skip"
    assert found["SumUp API"][0] == "ok" and found["SMTP"][0] == "ok"  # independent checks still run


def test_unreachable_database(run_payverify):
    """A database nobody answers for is exit 4, and the checks that need it are skipped."""
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    result = run_payverify("doctor", extra_env={"PAYVERIFY_DATABASE_URL": url})
    assert result.returncode == ExitStatus.DATABASE_UNAVAILABLE
    found = statuses(result)
    assert found["database"] == "FAIL"
    assert found["site tables"] == found["payverify schema"] == found["artists' SumUp tokens"] == "skip"
    assert "Traceback" not in result.stdout + result.stderr


def test_schema_not_current(run_payverify, db):
    """payverify's tables behind the code: the schema check fails with the upgrade hint, exit 5."""
    with db.transaction() as tx:
        tx.script("DELETE FROM payverify_schema_version WHERE version = (SELECT max(version) FROM "
                  "payverify_schema_version)")
    result = run_payverify("doctor")
    assert result.returncode == ExitStatus.SCHEMA
    status, reason = lines(result)["payverify schema"]
    assert status == "FAIL" and "payverify db upgrade" in reason


def test_revoked_refresh_token_names_the_artist(seed, sumup, run_payverify):
    """An expired token whose refresh token SumUp revoked: FAIL naming the artist and id, never the token."""
    artist = seed.artist("Kit Marlowe", oauth=True, token_expires_in=timedelta(minutes=-5),
                         register_access_token=False)
    sumup.revoke_refresh_token(artist.refresh_token)
    result = run_payverify("doctor")
    assert result.returncode == ExitStatus.SUMUP_UNAVAILABLE
    status, reason = artist_line(result, "Kit Marlowe", artist.id)
    assert status == "FAIL" and "reconnect" in reason
    output = result.stdout + result.stderr
    assert artist.refresh_token not in output and artist.access_token not in output


def test_expired_token_is_refreshed_and_stored(seed, sumup, db, run_payverify):
    """An expired but refreshable token: ok, and the rotated pair SumUp issued is stored."""
    artist = seed.artist("Ada Refresh", oauth=True, token_expires_in=timedelta(minutes=-5),
                         register_access_token=False)
    result = run_payverify("doctor")
    assert result.returncode == 0, result.stdout
    status, reason = artist_line(result, "Ada Refresh", artist.id)
    assert status == "ok" and "refreshed" in reason
    stored = tokens(db, artist.id)
    assert stored["access"] != artist.access_token
    assert sumup.refresh_tokens_issued and stored["refresh"] == sumup.refresh_tokens_issued[-1]
    assert stored["refresh"] != artist.refresh_token


def test_starttls_and_login_with_trusted_ca(tls_smtp, ca_file, run_payverify):
    """smtp:// with a server requiring STARTTLS and a login, its CA trusted through SSL_CERT_FILE: ok."""
    result = run_payverify("doctor", extra_env={"PAYVERIFY_SMTP_URL": tls_smtp.url("smtp", SMTP_USER, SMTP_PASSWORD),
                                                "SSL_CERT_FILE": ca_file})
    assert result.returncode == 0, result.stdout
    status, reason = lines(result)["SMTP"]
    assert status == "ok" and "STARTTLS" in reason and "login" in reason
    assert tls_smtp.messages == []  # the check sends no mail


def test_smtp_wrong_password_and_untrusted_certificate(tls_smtp, ca_file, run_payverify):
    """The SMTP check really logs in and verifies the certificate: a wrong password or an untrusted CA fails."""
    wrong = run_payverify("doctor", extra_env={"PAYVERIFY_SMTP_URL": tls_smtp.url("smtp", SMTP_USER, "nope-Pw-1234"),
                                               "SSL_CERT_FILE": ca_file})
    assert wrong.returncode == ExitStatus.ERROR
    # The capture server drops the session on a bad login rather than answering 535, so only FAIL is certain.
    assert lines(wrong)["SMTP"][0] == "FAIL"
    untrusted_url = tls_smtp.url("smtp", SMTP_USER, SMTP_PASSWORD)
    untrusted = run_payverify("doctor", extra_env={"PAYVERIFY_SMTP_URL": untrusted_url})
    assert untrusted.returncode == ExitStatus.ERROR
    assert lines(untrusted)["SMTP"][0] == "FAIL" and "certificate" in lines(untrusted)["SMTP"][1]
    assert SMTP_PASSWORD not in untrusted.stdout + untrusted.stderr
    assert "nope-Pw-1234" not in wrong.stdout + wrong.stderr


def test_no_secret_in_any_output(seed, sumup, db, env, tls_smtp, ca_file, dsn_with_password, run_payverify):
    """doctor (with a refresh, a revoked artist, STARTTLS login, a DSN password) and config print no secret."""
    fresh = seed.artist("Fresh Fay", oauth=True)
    expired = seed.artist("Expired Ed", oauth=True, token_expires_in=timedelta(minutes=-5),
                          register_access_token=False)
    revoked = seed.artist("Revoked Rae", oauth=True, token_expires_in=timedelta(minutes=-5),
                          register_access_token=False)
    sumup.revoke_refresh_token(revoked.refresh_token)
    extra = {"PAYVERIFY_DATABASE_URL": dsn_with_password, "SSL_CERT_FILE": ca_file,
             "PAYVERIFY_SMTP_URL": tls_smtp.url("smtp", SMTP_USER, SMTP_PASSWORD)}
    doctor = run_payverify("doctor", extra_env=extra)
    assert lines(doctor)["database"][0] == "ok" and lines(doctor)["SMTP"][0] == "ok", doctor.stdout
    assert artist_line(doctor, "Expired Ed", expired.id)[0] == "ok"
    wrong_smtp = run_payverify("doctor", extra_env={**extra, "SSL_CERT_FILE": ""})
    config = run_payverify("config", extra_env=extra)
    config_json = run_payverify("config", "--json", extra_env=extra)
    assert config.returncode == config_json.returncode == 0
    secrets = {PLATFORM_KEY, sumup.client_secret, SMTP_PASSWORD, DSN_PASSWORD}
    for artist in (fresh, expired, revoked):
        secrets |= {artist.access_token, artist.refresh_token}
    with sumup._lock:  # every token the simulator was given or issued
        secrets |= set(sumup._access) | set(sumup._refresh)
    for row in rows(db, "SELECT sumup_access_token, sumup_refresh_token FROM artists_artist"):
        secrets |= {v for v in row.values() if v}
    places = {"log file": Path(env["PAYVERIFY_LOG_FILE"]).read_text("utf-8")}
    for name, result in (("doctor", doctor), ("doctor/untrusted", wrong_smtp), ("config", config),
                         ("config --json", config_json)):
        places[f"{name} stdout"], places[f"{name} stderr"] = result.stdout, result.stderr
    leaks = [(where, s[:6] + "...") for where, text in places.items() for s in secrets if s and s in text]
    assert not leaks, f"secrets leaked: {leaks}"
    assert "Expired Ed" in doctor.stdout and "Revoked Rae" in doctor.stdout


def write_toml(tmp_path, text: str) -> str:
    path = tmp_path / "payverify.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture
def config_setup(tmp_path):
    """A TOML file with some settings (secrets among them), and an environment overriding one of them."""
    path = write_toml(tmp_path, f'''
PAYVERIFY_DATABASE_URL = "postgresql://payverify:{DSN_PASSWORD}@db.internal:5432/tickets?sslmode=require"
SUMUP_CLIENT_SECRET = "{CLIENT_SECRET_CANARY}"
PAYVERIFY_MAX_AGE_HOURS = 3
PAYVERIFY_SITE_NAME = "Harbour Tickets"
''')
    env = {"SUMUP_API_KEY": API_KEY_CANARY, "PAYVERIFY_SITE_NAME": "Env Tickets",
           "PAYVERIFY_SMTP_URL": f"smtps://{SMTP_USER}:{SMTP_PASSWORD}@mail.example.com:465",
           # blank means unset, so these come from the file or the default
           "PAYVERIFY_DATABASE_URL": "", "SUMUP_CLIENT_SECRET": "", "PAYVERIFY_SITE_URL": "",
           "PAYVERIFY_TEMPLATES_DIR": ""}
    return path, env


def test_config_shows_sources_and_masks_secrets(config_setup, run_payverify):
    """Each variable once, in order, with its source (environment, --config file, default); secrets masked."""
    path, env = config_setup
    result = run_payverify("--config", path, "config", extra_env=env)
    assert result.returncode == 0, result.stderr
    shown = dict(line.split(" = ", 1) for line in result.stdout.splitlines())
    assert list(shown) == list(VARIABLES)
    assert shown["PAYVERIFY_DATABASE_URL"] == (f"postgresql://payverify:***@db.internal:5432/tickets?sslmode=require"
                                               f"  (from file {path})")
    assert shown["SUMUP_CLIENT_SECRET"] == f"***  (from file {path})"
    assert shown["PAYVERIFY_MAX_AGE_HOURS"] == f"3  (from file {path})"
    assert shown["PAYVERIFY_SITE_NAME"] == "Env Tickets  (from environment)"  # the environment wins
    assert shown["SUMUP_API_KEY"] == "***  (from environment)"
    assert shown["PAYVERIFY_SMTP_URL"] == f"smtps://{SMTP_USER}:***@mail.example.com:465  (from environment)"
    assert shown["PAYVERIFY_TIMEZONE"] == "Europe/Jersey  (default)"
    assert shown["PAYVERIFY_FAILED_GRACE_MINUTES"] == "30  (default)"
    assert shown["PAYVERIFY_SITE_URL"] == "(not set)"
    assert shown["PAYVERIFY_TEMPLATES_DIR"] == "(not set)"
    for secret in (DSN_PASSWORD, CLIENT_SECRET_CANARY, API_KEY_CANARY, SMTP_PASSWORD):
        assert secret not in result.stdout + result.stderr


def test_config_json(config_setup, run_payverify):
    """`config --json` is valid JSON with the same values, sources and masking."""
    path, env = config_setup
    result = run_payverify("--config", path, "config", "--json", extra_env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert list(data) == list(VARIABLES)
    assert data["PAYVERIFY_MAX_AGE_HOURS"] == {"value": 3, "source": "file", "file": path}
    assert data["PAYVERIFY_SITE_NAME"] == {"value": "Env Tickets", "source": "environment"}
    assert data["PAYVERIFY_CONCURRENCY"] == {"value": 8, "source": "default"}
    assert data["SUMUP_API_KEY"]["value"] == data["SUMUP_CLIENT_SECRET"]["value"] == "***"
    assert data["PAYVERIFY_SITE_URL"]["value"] is None
    for secret in (DSN_PASSWORD, CLIENT_SECRET_CANARY, API_KEY_CANARY, SMTP_PASSWORD):
        assert secret not in result.stdout


def test_config_masks_a_dsn_it_cannot_parse_safely(run_payverify):
    """A key=value DSN (or a URL whose password cannot be isolated) is shown as *** entirely."""
    result = run_payverify("config", extra_env={
        "PAYVERIFY_DATABASE_URL": f"host=db.internal dbname=tickets password={DSN_PASSWORD}"})
    assert result.returncode == 0
    assert "PAYVERIFY_DATABASE_URL = ***  (from environment)" in result.stdout.splitlines()
    assert DSN_PASSWORD not in result.stdout


@pytest.mark.parametrize("command", ["config", "doctor"])
def test_bad_input_is_one_line(command, run_payverify, tmp_path):
    """A missing --config file or a bad value: exit 3, the problem named, no traceback."""
    missing = run_payverify("--config", str(tmp_path / "nope.toml"), command)
    assert missing.returncode == ExitStatus.CONFIG
    assert "nope.toml does not exist" in missing.stdout + missing.stderr
    bad = run_payverify(command, extra_env={"PAYVERIFY_MAX_AGE_HOURS": "soon"})
    assert bad.returncode == ExitStatus.CONFIG
    assert "PAYVERIFY_MAX_AGE_HOURS" in bad.stdout + bad.stderr
    for result in (missing, bad):
        assert "Traceback" not in result.stdout + result.stderr
    if command == "config":
        assert len(missing.stderr.strip().splitlines()) == 1 and missing.stdout == ""
    else:
        assert statuses(bad)["configuration"] == "FAIL"
        assert set(statuses(bad).values()) == {"FAIL", "skip"}


def test_unknown_option_is_a_usage_error(run_payverify):
    """A malformed option is one line and exit 2."""
    result = run_payverify("doctor", "--fast")
    assert result.returncode == ExitStatus.USAGE
    assert len(result.stderr.strip().splitlines()) == 1 and "--fast" in result.stderr


def index_line(result) -> str:
    return next(line for line in result.stdout.splitlines() if "site indexes" in line)


def test_doctor_finds_the_status_index(seed, run_payverify):
    seed.artist()
    result = run_payverify("doctor")
    assert index_line(result) == "ok    site indexes: orders_order.status is indexed (orders_order_status_445594e5)"


def test_doctor_warns_of_a_missing_status_index_with_the_statement(seed, db, run_payverify):
    """A site whose Django field lacks db_index=True: a warning naming the index and the exact statement
    (which works as written), and nothing fails."""
    seed.artist()
    with db.transaction() as tx:
        tx.script("DROP INDEX orders_order_status_445594e5; DROP INDEX orders_order_status_445594e5_like")
    result = run_payverify("doctor")
    line = index_line(result)
    statement = 'CREATE INDEX CONCURRENTLY "orders_order_status_idx" ON "public"."orders_order" ("status");'
    assert line.startswith("warn  site indexes: orders_order.status has no index") and statement in line, line
    assert 'Meta.indexes = [models.Index(fields=["status"])]' in line
    assert result.returncode == 0, result.stdout
    outside_transaction(db, statement)
    assert index_line(run_payverify("doctor")) == ("ok    site indexes: orders_order.status is indexed "
                                                   "(orders_order_status_idx)")


def index_lines(result) -> dict[str, str]:
    """Each site-indexes line, by the column it is about."""
    prefix_len = len("ok    site indexes: ")
    found = {}
    for line in result.stdout.splitlines():
        if "  site indexes: " in line:
            found[line[prefix_len:].split(" ", 1)[0]] = line
    return found


def test_doctor_asks_for_reconciles_indexes_once_the_site_reconciles(seed, db, run_payverify):
    """A standard Django site has no index on sumup_transaction_code or paid_at. Before reconcile has
    run that is fine and said to be; once it has, each is a warning with its statement, and gone when
    the statement has been run. Nothing fails either way."""
    seed.artist(oauth=True)
    before = run_payverify("doctor")
    lines = index_lines(before)
    assert set(lines) == {"orders_order.status", "orders_order.sumup_transaction_code", "orders_order.paid_at"}
    for column in ("sumup_transaction_code", "paid_at"):
        assert lines[f"orders_order.{column}"] == (f"ok    site indexes: orders_order.{column} has no index; only "
                                                   "reconcile needs one, and it has not run here")
    assert before.returncode == 0, before.stdout

    assert run_payverify("reconcile").returncode == ExitStatus.OK
    after = run_payverify("doctor")
    lines = index_lines(after)
    assert after.returncode == 0, after.stdout
    statements = []
    for column, reads in (("sumup_transaction_code", "every page of a reconcile run's history reads all of the "
                                                      "account's orders"),
                          ("paid_at", "every reconcile run reads all of each account's completed orders")):
        statement = (f'CREATE INDEX CONCURRENTLY "orders_order_{column}_idx" ON "public"."orders_order" '
                     f'("{column}");')
        line = lines[f"orders_order.{column}"]
        assert line.startswith(f"warn  site indexes: orders_order.{column} has no index, so {reads}; ask the "
                               f"site's team to run {statement}"), line
        assert f'Meta.indexes = [models.Index(fields=["{column}"])]' in line
        statements.append(statement)
    assert lines["orders_order.status"].startswith("ok    site indexes: orders_order.status is indexed")

    outside_transaction(db, *statements)
    lines = index_lines(run_payverify("doctor"))
    for column in ("sumup_transaction_code", "paid_at"):
        assert lines[f"orders_order.{column}"] == (f"ok    site indexes: orders_order.{column} is indexed "
                                                   f"(orders_order_{column}_idx)")

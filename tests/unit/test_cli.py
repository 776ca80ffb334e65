"""How every command fails: named exit codes, one line on stderr, no traceback, no secret; and the
command line itself (help, version, --since).

Every run goes through the real entry point, `payverify.cli.main`, in this process (tests/cli_runner.py):
the exit status is main()'s, as a shell would see it. Nothing here needs a database server: the
unreachable one is a closed port.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

import click
import pytest

from payverify.cli.commands import cli
from payverify.cli.params import parse_since
from payverify.exitcodes import ExitStatus
from tests.cli_runner import Ran, invoke, one_line

PASSWORD = "Sekr1tPw"
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/x"
UNREACHABLE_WITH_PASSWORD = f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/x"


@pytest.fixture
def log_file(tmp_path) -> Path:
    return tmp_path / "payverify.log"


@pytest.fixture
def run(log_file):
    """`payverify ARGS` with no payverify/SumUp setting but a temporary log file, plus `env` (a None
    value removes a variable)."""

    def _run(*args: str, env: dict[str, str | None] | None = None) -> Ran:
        return invoke(*args, env={"PAYVERIFY_LOG_FILE": str(log_file), **(env or {})})

    return _run


def all_commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found.extend(all_commands(command, (*path, name)))
        else:
            found.append((*path, name))
    return found


# ---- malformed command lines: exit 2 ------------------------------------------------------------

@pytest.mark.parametrize("value", ["yesterday", "12x", "2999-01-01", "2999-01-01T00:00:00+00:00",
                                   "99999999999d", "999999999d"])
def test_malformed_since_is_a_usage_error(run, value):
    """A bad --since (not a date, bad unit, in the future, too far back): exit 2, one line naming it."""
    result = run("sweep", "--since", value, env={"PAYVERIFY_DATABASE_URL": UNREACHABLE})
    assert result.returncode == ExitStatus.USAGE == 2
    line = one_line(result)
    assert value in line and "--since" in line
    assert result.stdout == ""


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_bad_limit_is_a_usage_error(run, value):
    """--limit must be a whole number >= 1: exit 2, one line naming the option."""
    result = run("sweep", "--limit", value, env={"PAYVERIFY_DATABASE_URL": UNREACHABLE})
    assert result.returncode == ExitStatus.USAGE
    assert "--limit" in one_line(result)


def test_usage_errors_are_checked_before_the_database(run):
    """A usage error wins over a missing database URL: the command line is refused first."""
    result = run("sweep", "--since", "yesterday", env={"PAYVERIFY_DATABASE_URL": None})
    assert result.returncode == ExitStatus.USAGE
    assert "PAYVERIFY_DATABASE_URL" not in result.stderr


def test_unknown_command_and_missing_argument_are_usage_errors(run):
    """An unknown subcommand and `check` without ORDER: exit 2, one line each."""
    unknown = run("swep")
    assert unknown.returncode == ExitStatus.USAGE
    assert "swep" in one_line(unknown)
    missing = run("check")
    assert missing.returncode == ExitStatus.USAGE
    assert "ORDER" in one_line(missing)


# ---- configuration: exit 3 ----------------------------------------------------------------------

@pytest.mark.parametrize("args", [("sweep",), ("check", "JE-1"), ("db", "upgrade")])
def test_missing_database_url_is_a_config_error(run, args):
    """PAYVERIFY_DATABASE_URL unset: exit 3, one line naming the variable."""
    result = run(*args, env={"PAYVERIFY_DATABASE_URL": None})
    assert result.returncode == ExitStatus.CONFIG == 3
    assert "PAYVERIFY_DATABASE_URL" in one_line(result)


@pytest.mark.parametrize("variable, value", [("PAYVERIFY_MAX_AGE_HOURS", "abc"), ("PAYVERIFY_MAX_ORDERS_PER_RUN", "0"),
                                             ("SUMUP_API_BASE_URL", "ftp://x"),
                                             ("PAYVERIFY_FAILED_GRACE_MINUTES", "-5")])
def test_invalid_tunable_is_a_config_error(run, variable, value):
    """An invalid setting: exit 3, one line naming the variable (before any database work)."""
    result = run("sweep", env={"PAYVERIFY_DATABASE_URL": UNREACHABLE, variable: value})
    assert result.returncode == ExitStatus.CONFIG
    assert variable in one_line(result)


# ---- the database: exit 4 and 5 -----------------------------------------------------------------

@pytest.mark.parametrize("args", [("sweep",), ("check", "JE-1"), ("db", "upgrade")])
def test_unreachable_database(run, args):
    """Nothing listening at the database's port: exit 4, one line, no traceback."""
    result = run(*args, env={"PAYVERIFY_DATABASE_URL": UNREACHABLE})
    assert result.returncode == ExitStatus.DATABASE_UNAVAILABLE == 4
    assert "database" in one_line(result)
    assert result.stdout == ""


@pytest.mark.parametrize("args", [("sweep",), ("check", "JE-1"), ("db", "upgrade")])
def test_dsn_password_never_shown(run, log_file, args):
    """The DSN's password is in neither stdout, stderr nor the log file (even at DEBUG)."""
    result = run(*args, env={"PAYVERIFY_DATABASE_URL": UNREACHABLE_WITH_PASSWORD, "PAYVERIFY_LOG_LEVEL": "DEBUG"})
    assert result.returncode == ExitStatus.DATABASE_UNAVAILABLE
    one_line(result)
    assert PASSWORD not in result.stdout and PASSWORD not in result.stderr
    assert log_file.exists()  # the log was set up, so this checks a real file
    assert PASSWORD not in log_file.read_text(encoding="utf-8")








# ---- help and version ---------------------------------------------------------------------------

def test_command_walk_finds_every_command():
    """The walk below sees the documented commands (so the --help test cannot pass on an empty list)."""
    paths = {" ".join(p) for p in all_commands()}
    assert {"", "sweep", "check", "db", "db upgrade"} <= paths


@pytest.mark.parametrize("path", all_commands(), ids=lambda p: " ".join(p) or "payverify")
def test_every_command_has_help(run, path):
    """`--help` on every command and subcommand: exit 0, its usage line, nothing on stderr, no config needed."""
    for flag in ("--help", "-h"):
        result = run(*path, flag)
        assert result.returncode == ExitStatus.OK, result.stderr
        assert result.stdout.startswith("Usage: " + " ".join(("payverify", *path)))
        assert result.stderr == ""


def test_version(run):
    """`payverify --version` prints the installed version and exits 0."""
    result = run("--version")
    assert result.returncode == ExitStatus.OK
    assert result.stdout.strip() == f"payverify, version {version('payverify')}"


# ---- --since parsing ----------------------------------------------------------------------------

NOW = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("text, expected", [
    ("90m", NOW - timedelta(minutes=90)),
    ("48h", NOW - timedelta(hours=48)),
    ("7d", NOW - timedelta(days=7)),
    (" 7d ", NOW - timedelta(days=7)),
    ("2024-06-01", datetime(2024, 6, 1, tzinfo=UTC)),
    ("2024-06-14T09:30:00+02:00", datetime(2024, 6, 14, 7, 30, tzinfo=UTC)),
    ("2024-06-14T09:30:00Z", datetime(2024, 6, 14, 9, 30, tzinfo=UTC)),
    ("2024-06-14T09:30:00", datetime(2024, 6, 14, 9, 30, tzinfo=UTC)),
])
def test_parse_since_accepts(text, expected):
    """Spans count back from now; ISO dates are midnight UTC; offsets are honoured; Z and naive mean UTC."""
    parsed = parse_since(text, NOW)
    assert parsed == expected
    assert parsed.utcoffset() is not None  # always timezone-aware


def test_parse_since_date_is_midnight_utc():
    """A bare date means the start of that day in UTC, not local time."""
    parsed = parse_since("2024-06-01", NOW)
    assert (parsed.date(), parsed.hour, parsed.minute, parsed.utcoffset()) == (date(2024, 6, 1), 0, 0, timedelta(0))


@pytest.mark.parametrize("text", ["yesterday", "12x", "", "h", "-5h", "2024-13-01", "2024-06-16",
                                  "2024-06-15T12:00:01Z", "99999999999d", "999999999d", "400d", "0001-01-01"])
def test_parse_since_refuses(text):
    """Unparseable, in the future or beyond datetime's range: ValueError quoting the input."""
    with pytest.raises(ValueError) as raised:
        parse_since(text, NOW)
    assert repr(text) in str(raised.value)


@pytest.mark.parametrize("url", [f"postgresql://postgres:{PASSWORD}%zz@127.0.0.1/x",
                                 f"host=127.0.0.1 password={PASSWORD} nonsense"])
def test_malformed_database_url_is_a_config_error_without_the_password(run, url):
    """A DSN libpq cannot parse: exit 3 naming PAYVERIFY_DATABASE_URL; libpq's message, which quotes
    the bad part (possibly the password), is never shown."""
    result = run("sweep", env={"PAYVERIFY_DATABASE_URL": url})
    assert result.returncode == ExitStatus.CONFIG
    assert "PAYVERIFY_DATABASE_URL" in one_line(result)
    assert PASSWORD not in result.stderr + result.stdout

"""Configuration: DESIGN.md's defaults, the TOML file, the environment winning, clear errors, no secrets."""

from __future__ import annotations

import pytest

from payverify.config import VARIABLES, load_settings, value_of
from payverify.errors import ConfigError
from payverify.exitcodes import ExitStatus
from payverify.secret import Secret

DSN = "postgresql://payverify:DsnPw9931@db.internal:5432/tickets"


def write_toml(tmp_path, text: str) -> str:
    path = tmp_path / "payverify.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_defaults_match_the_design():
    """With nothing configured, every default is DESIGN.md's."""
    s = load_settings(environ={})
    assert s.policy.max_age_hours == 2
    assert s.policy.failed_grace_minutes == 30
    assert s.policy.rescue_hours == 24
    assert s.policy.stuck_minutes == 30
    assert s.alert_email == "alerts@coderra.je"
    assert s.sumup_api_base_url == "https://api.sumup.com"
    assert s.log_file == "logs/payment_polling.log"
    assert s.retention_days == 90
    assert s.database_url is None and s.sumup_api_key is None and s.smtp_url is None


def test_defaults_do_not_read_the_process_environment(monkeypatch):
    """An explicit `environ` is the only environment consulted (so the defaults test means something)."""
    monkeypatch.setenv("PAYVERIFY_MAX_AGE_HOURS", "7")
    assert load_settings(environ={}).policy.max_age_hours == 2
    assert load_settings().policy.max_age_hours == 7


def test_environment_values_are_parsed():
    """Environment variables set the matching fields, converted to numbers; blank means unset."""
    s = load_settings(environ={"PAYVERIFY_MAX_AGE_HOURS": "3.5", "PAYVERIFY_WATCH_INTERVAL": "0.5",
                               "PAYVERIFY_ALERT_EMAIL": "ops@example.com", "SUMUP_API_BASE_URL": "http://127.0.0.1:9/",
                               "PAYVERIFY_LOG_LEVEL": "debug", "PAYVERIFY_RESCUE_HOURS": "  ",
                               "PAYVERIFY_SMTP_CONNECTIONS": "3", "PAYVERIFY_RETENTION_DAYS": "30"})
    assert s.policy.max_age_hours == 3.5
    assert s.retention_days == 30
    assert s.smtp_connections == 3
    assert s.watch_interval == 0.5
    assert s.alert_email == "ops@example.com"
    assert s.sumup_api_base_url == "http://127.0.0.1:9"  # trailing slash dropped
    assert s.log_level == "DEBUG"
    assert s.policy.rescue_hours == 24


def test_toml_values_are_used(tmp_path):
    """Values in the TOML file (strings or numbers, environment names as keys) are used."""
    path = write_toml(tmp_path, f'''
PAYVERIFY_DATABASE_URL = "{DSN}"
PAYVERIFY_MAX_AGE_HOURS = 3
PAYVERIFY_FAILED_GRACE_MINUTES = 45.5
PAYVERIFY_ALERT_EMAIL = "ops@example.com"
PAYVERIFY_LOG_FILE = "/var/log/payverify.log"
''')
    s = load_settings(environ={}, config_file=path)
    assert s.database_url == Secret(DSN)
    assert s.policy.max_age_hours == 3
    assert s.policy.failed_grace_minutes == 45.5
    assert s.alert_email == "ops@example.com"
    assert s.log_file == "/var/log/payverify.log"
    assert s.policy.rescue_hours == 24  # not in the file: the default


def test_config_file_named_by_environment(tmp_path):
    """PAYVERIFY_CONFIG names the file when no --config is given."""
    path = write_toml(tmp_path, "PAYVERIFY_STUCK_MINUTES = 12\n")
    assert load_settings(environ={"PAYVERIFY_CONFIG": path}).policy.stuck_minutes == 12


def test_environment_wins_over_toml(tmp_path):
    """A variable set in both places takes the environment's value; the file still fills the rest."""
    path = write_toml(tmp_path, 'PAYVERIFY_MAX_AGE_HOURS = 3\nPAYVERIFY_ALERT_EMAIL = "file@example.com"\n')
    s = load_settings(environ={"PAYVERIFY_MAX_AGE_HOURS": "5"}, config_file=path)
    assert s.policy.max_age_hours == 5
    assert s.alert_email == "file@example.com"


def test_unknown_toml_key_is_refused(tmp_path):
    """A key payverify does not know (a typo) is a ConfigError naming it, not silently ignored."""
    path = write_toml(tmp_path, "PAYVERIFY_MAX_AGE_HOUR = 3\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={}, config_file=path)
    assert "PAYVERIFY_MAX_AGE_HOUR" in str(raised.value)
    assert raised.value.exit_status == ExitStatus.CONFIG


def test_toml_syntax_error(tmp_path):
    """A file that is not TOML is a ConfigError naming the file."""
    path = write_toml(tmp_path, "PAYVERIFY_MAX_AGE_HOURS = = 3\n[unclosed\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={}, config_file=path)
    assert path in str(raised.value) and "TOML" in str(raised.value)


def test_toml_table_value_is_refused(tmp_path):
    """A table or boolean where a string/number is expected is a ConfigError naming the key."""
    path = write_toml(tmp_path, "PAYVERIFY_MAX_ORDERS_PER_RUN = true\n")
    with pytest.raises(ConfigError, match="PAYVERIFY_MAX_ORDERS_PER_RUN"):
        load_settings(environ={}, config_file=path)


def test_invalid_toml_value_names_the_variable(tmp_path):
    """A bad value in the file is reported by its variable name, like a bad environment value."""
    path = write_toml(tmp_path, "PAYVERIFY_MAX_ORDERS_PER_RUN = 0\n")
    with pytest.raises(ConfigError, match="PAYVERIFY_MAX_ORDERS_PER_RUN"):
        load_settings(environ={}, config_file=path)


def test_missing_config_file(tmp_path):
    """A named configuration file that does not exist is a ConfigError naming the path."""
    path = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={}, config_file=path)
    assert path in str(raised.value) and "does not exist" in str(raised.value)


@pytest.mark.parametrize("variable, value", [("PAYVERIFY_MAX_AGE_HOURS", "abc"), ("PAYVERIFY_MAX_AGE_HOURS", "0"),
                                             ("PAYVERIFY_MAX_ORDERS_PER_RUN", "0"),
                                             ("PAYVERIFY_MAX_ORDERS_PER_RUN", "2.5"),
                                             ("SUMUP_API_BASE_URL", "ftp://x"), ("SUMUP_API_BASE_URL", "https://"),
                                             ("SUMUP_API_BASE_URL", "http://api.sumup.com"),
                                             ("PAYVERIFY_HEARTBEAT_URL", "http://heartbeat.invalid/5e1c-uuid"),
                                             ("PAYVERIFY_LOG_LEVEL", "LOUD"), ("PAYVERIFY_TIME_BUDGET", "nan"),
                                             ("PAYVERIFY_SMTP_CONNECTIONS", "0"),
                                             ("PAYVERIFY_SMTP_CONNECTIONS", "17"),
                                             ("PAYVERIFY_RETENTION_DAYS", "0"), ("PAYVERIFY_RETENTION_DAYS", "-3"),
                                             ("PAYVERIFY_RETENTION_DAYS", "90d"), ("PAYVERIFY_RETENTION_DAYS", "1.5"),
                                             ("PAYVERIFY_RETENTION_DAYS", "36501")])
def test_invalid_environment_value_names_the_variable(variable, value):
    """Every invalid value is a ConfigError whose message starts with the variable's name."""
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={variable: value})
    assert str(raised.value).startswith(variable)


def test_repr_shows_no_secret():
    """repr/str of Settings show *** for every secret and never the values (nor the DSN's password)."""
    secrets = {"PAYVERIFY_DATABASE_URL": DSN, "SUMUP_API_KEY": "sup_sk_LiveKey7788",
               "SUMUP_CLIENT_SECRET": "cs_ClientSecret4411", "PAYVERIFY_SMTP_URL": "smtp://u:SmtpPw5522@mail:587"}
    s = load_settings(environ=secrets)
    text = repr(s) + str(s)
    for value in (*secrets.values(), "DsnPw9931", "SmtpPw5522"):
        assert value not in text
    assert text.count("***") >= 2 * len(secrets)
    assert s.sumup_api_key.reveal() == "sup_sk_LiveKey7788"  # still usable where needed


def test_secret_prints_stars():
    """Secret's repr, str and format show ***; its value only through reveal()."""
    secret = Secret("hunter2-value")
    assert repr(secret) == "Secret('***')"
    assert str(secret) == "***" and f"{secret}" == "***"
    assert "hunter2" not in repr([secret]) and "hunter2" not in repr({"k": secret})
    assert secret.reveal() == "hunter2-value"


def test_every_variable_maps_to_a_field():
    """Each documented variable maps to a real Settings/Policy field (a typo in the table would break config)."""
    settings = load_settings(environ={})
    for name in VARIABLES:
        value_of(settings, name)  # AttributeError on a target that is no field
    assert value_of(settings, "PAYVERIFY_MAX_AGE_HOURS") == settings.policy.max_age_hours
    assert value_of(settings, "PAYVERIFY_ALERT_EMAIL") == settings.alert_email

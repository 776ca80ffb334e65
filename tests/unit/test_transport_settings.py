"""What counts as this machine, and the SMTP URL's starttls= parameter."""

from __future__ import annotations

import pytest

from payverify.errors import ConfigError
from payverify.hosts import is_loopback, is_unix_socket
from payverify.secret import Secret
from payverify.smtp_url import OPTIONAL, REQUIRED, parse_smtp_url


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "localhost.", "127.0.0.1", "127.5.6.7", "::1", "[::1]",
                                  "::ffff:127.0.0.1"])
def test_this_machine(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["", None, "127.1", "mail.example.com", "10.0.0.5", "192.0.2.1", "::2",
                                  "localhost.example.com", "0.0.0.0", "/var/run/postgresql"])
def test_another_machine(host):
    assert not is_loopback(host)


def test_unix_sockets():
    assert is_unix_socket("/var/run/postgresql") and is_unix_socket("@abstract")
    assert not is_unix_socket("db.example.com") and not is_unix_socket(None)


@pytest.mark.parametrize(("url", "starttls", "explicit"), [
    ("smtp://mail.example.com:25", REQUIRED, False),
    ("smtp://u:p@mail.example.com:587", REQUIRED, False),
    ("smtp://127.0.0.1:25", OPTIONAL, False),
    ("smtp://localhost", OPTIONAL, False),
    ("smtp://mail.example.com:25?starttls=optional", OPTIONAL, True),
    ("smtp://127.0.0.1:25?starttls=required", REQUIRED, True),
])
def test_starttls_by_host_unless_the_url_says(url, starttls, explicit):
    config = parse_smtp_url(Secret(url))
    assert (config.starttls, config.starttls_explicit) == (starttls, explicit)


@pytest.mark.parametrize("url", ["smtp://mail:25?starttls=no", "smtp://mail:25?tls=none", "smtp://mail:25?starttls",
                                 "smtps://mail:465?starttls=optional", "smtp://mail:25?starttls=optional&starttls=optional",
                                 "smtp://u:SmtpPw8812@mail:25?password=SmtpPw8812"])
def test_a_bad_parameter_is_a_config_error_naming_the_variable_and_no_secret(url):
    with pytest.raises(ConfigError) as raised:
        parse_smtp_url(Secret(url))
    assert str(raised.value).startswith("PAYVERIFY_SMTP_URL") and "SmtpPw8812" not in str(raised.value)

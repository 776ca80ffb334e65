"""No token, key or password in any repr: a traceback's locals, a debug line or an f-string must not
show one."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from datetime import UTC, datetime

import payverify
from payverify.models import ArtistTokens
from payverify.secret import Secret
from payverify.smtp_url import parse_smtp_url
from payverify.sumup.client import TokenGrant

ACCESS, REFRESH = "at_ReprCanary7781", "rt_ReprCanary5512"


def test_an_artists_tokens_are_not_in_its_repr():
    row = ArtistTokens(id=7, name="Ana", sumup_access_token=ACCESS, sumup_refresh_token=REFRESH,
                       sumup_token_expires_at=datetime(2026, 1, 1, tzinfo=UTC))
    for text in (repr(row), str(row), f"{row}", repr([row])):
        assert ACCESS not in text and REFRESH not in text
        assert "Ana" in text  # the rest is still there to read
    assert row.sumup_access_token == ACCESS  # and the values are still usable


def test_grants_and_smtp_passwords_are_secrets():
    grant = TokenGrant(Secret(ACCESS), Secret(REFRESH), 3600, None)
    smtp = parse_smtp_url(Secret("smtp://mailer:SmtpReprPw99@mail.example.com:587"))
    for text in (repr(grant), repr(smtp)):
        assert ACCESS not in text and REFRESH not in text and "SmtpReprPw99" not in text


def test_no_dataclass_shows_a_field_named_like_a_credential():
    """Every dataclass in payverify: a plain-text field named like a token, secret, password or key is
    left out of the repr (or is a Secret, whose repr is ***)."""
    shown = []
    for module in pkgutil.walk_packages(payverify.__path__, "payverify."):
        loaded = importlib.import_module(module.name)
        for value in vars(loaded).values():
            if not (isinstance(value, type) and dataclasses.is_dataclass(value) and value.__module__ == module.name):
                continue
            for f in dataclasses.fields(value):
                named = any(word in f.name for word in ("token", "secret", "password", "api_key"))
                text = str(f.type).replace(" ", "").split("|")  # annotations are strings here
                if named and f.repr and "str" in text:
                    shown.append(f"{value.__qualname__}.{f.name}")
    assert shown == []

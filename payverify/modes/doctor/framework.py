"""The shape of a doctor check: what it needs, what it found, the line it prints.

Each check is a small function that declares what it needs: a setting, the database, the site's
tables, SumUp answering. A check whose need is not met is skipped with that need's reason; one that
fails (or breaks) does not stop the others. Every line passes the redactor and printable() on its way out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import structlog

from payverify import logconfig
from payverify.config import Settings
from payverify.db import Database
from payverify.exitcodes import ExitStatus
from payverify.printable import printable
from payverify.sumup.client import Reply, SumUpClient

log = structlog.get_logger("payverify.modes.doctor")
T = TypeVar("T")

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"


@dataclass(frozen=True)
class Result:
    status: str  # "ok", "warn" (works, but worth changing), "FAIL" or "skip"
    check: str
    reason: str
    exit_status: ExitStatus = ExitStatus.OK  # the command's, if this is the first failure

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def line(self) -> str:
        # A check's name or reason can quote an artist's name or SumUp: one line, whatever they hold.
        return printable(logconfig.redact(f"{self.status:<4}  {self.check}: {self.reason}"))


class Found:
    """What the checks so far have established, for the checks after them."""

    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.db: Database | None = None
        self.client: SumUpClient | None = None
        self.site_tables_ok = False
        self.sumup_answers = False
        self.platform_reply: Reply | None = None  # SumUp's answer to the probe with the platform key

    # What a check needs, for checks whose needs guarantee it is there.
    @property
    def config(self) -> Settings:
        return needed(self.settings)

    @property
    def database(self) -> Database:
        return needed(self.db)

    @property
    def sumup(self) -> SumUpClient:
        return needed(self.client)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.db is not None:
            self.db.close()


def needed(value: T | None) -> T:
    if value is None:  # a check's needs are meant to make this impossible
        raise RuntimeError("a check ran without what it needs")
    return value


@dataclass(frozen=True)
class Need:
    """A precondition of a check, and the skip reason when it is not met."""

    met: Callable[[Found], bool]
    reason: str


CONFIGURATION = Need(lambda f: f.settings is not None, "configuration could not be read")
DATABASE = Need(lambda f: f.db is not None, "needs the database")
SITE_TABLES = Need(lambda f: f.site_tables_ok, "needs the site's tables")
SUMUP = Need(lambda f: f.sumup_answers, "needs SumUp to answer")


def needs_setting(name: str, reason: str) -> Need:
    return Need(lambda f: bool(getattr(f.config, name)), reason)


@dataclass(frozen=True)
class Line:
    """A line of output: its name, and the exit status it gives the command when it is a failure."""

    name: str
    exit_status: ExitStatus

    def fail(self, reason: str, exit_status: ExitStatus | None = None) -> Result:
        return Result(FAIL, self.name, reason, self.exit_status if exit_status is None else exit_status)

    def ok(self, reason: str) -> Result:
        return Result(OK, self.name, reason)

    def internal_error(self, exc: Exception) -> Result:
        """A bug, not a finding: this line fails, the traceback goes to the log, the other lines go on."""
        log.error("doctor.internal_error", check=self.name, exc_info=(type(exc), exc, exc.__traceback__))
        return self.fail(f"internal error ({type(exc).__name__}); details are in the log file")


@dataclass(frozen=True)
class Check(Line):
    """One check: its line(s) come from `run` (the artists' check gives one per artist), unless one
    of its needs, tried in order, is not met."""

    run: Callable[[Found, Check], Result | Iterable[Result]]
    needs: tuple[Need, ...] = (CONFIGURATION,)

    def results(self, found: Found) -> Iterator[Result]:
        unmet = next((need for need in self.needs if not need.met(found)), None)
        if unmet is not None:
            yield Result(SKIP, self.name, unmet.reason)
            return
        try:
            outcome = self.run(found, self)
            yield from [outcome] if isinstance(outcome, Result) else outcome
        except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
            yield self.internal_error(exc)

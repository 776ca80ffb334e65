"""A payverify_runs row per run: when it started and ended, how, and what it did (feeds the metrics)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Protocol

import structlog

from payverify.db import Database
from payverify.errors import PayverifyError

log = structlog.get_logger("payverify.monitoring")


def record_run_start(db: Database, run_id: str, host: str, command: str) -> bool:
    """A run begins. Never raises: a database problem is logged and gives False."""
    return _best_effort(db, "run.record_start_failed", "insert_run", run_id=run_id, host=host, command=command)


class RunTally(Protocol):
    """What a run did (a sweep's report): only what the run row keeps. Read-only, so a report's own
    mapping (a Counter) fits."""

    @property
    def verified(self) -> int: ...
    @property
    def outcomes(self) -> Mapping[str, int]: ...
    @property
    def errors(self) -> int: ...


class MailTally(Protocol):
    @property
    def sent(self) -> int: ...
    @property
    def failed(self) -> int: ...


def record_run_end(db: Database, run_id: str, exit_status: int, report: RunTally | None,
                   mail: MailTally | None, sumup_errors: Mapping[str, int] | None = None) -> bool:
    """The run ends: exit status, orders verified by outcome, SumUp errors by kind, orders that errored,
    mail. Never raises."""
    outcomes = json.dumps({str(k): int(v) for k, v in report.outcomes.items()} if report else {})
    errors = json.dumps({str(k): int(v) for k, v in (sumup_errors or {}).items()})
    return _best_effort(db, "run.record_end_failed", "finish_run", run_id=run_id, exit_status=int(exit_status),
                        verified=report.verified if report else None, outcomes=outcomes, sumup_errors=errors,
                        order_errors=report.errors if report else None,
                        mail_sent=mail.sent if mail else None, mail_failed=mail.failed if mail else None)


def _best_effort(db: Database, event: str, query: str, **params) -> bool:
    try:
        with db.transaction() as tx:
            return tx.run(query, **params) == 1
    except PayverifyError as exc:  # bookkeeping must not fail a run
        log.warning(event, run_id=params["run_id"], error=str(exc))
        return False

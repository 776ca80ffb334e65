"""One attempt at one order, the same for a sweep and for watch: claim its lease, verify it (ask SumUp
with no transaction open, decide, settle in one transaction, which releases the lease), or record
why it could not be verified. Each worker thread owns its connection, SumUp client and verifier.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog

from payverify.addresses import one_line
from payverify.config import Settings
from payverify.db import Database
from payverify.errors import DatabaseError, DatabaseUnavailable, PayverifyError
from payverify.exitcodes import ExitStatus
from payverify.orders.lease import NOTICED, leased
from payverify.orders.settle import Attempt, record_error
from payverify.orders.verify import Result, Verifier
from payverify.sumup.client import SumUpClient

log = structlog.get_logger("payverify.modes.attempt")

ERROR_MAX_CHARS = 300

# What an attempt gave: VERIFIED (a Result), ERROR (an OrderFailure), CLAIMED (another run holds the lease).
VERIFIED, ERROR, CLAIMED = "verified", "error", "claimed"


@dataclass(frozen=True)
class OrderFailure:
    """An order whose verification raised (not a SumUp "no answer"): what a person is told."""

    order_id: int
    order_number: str | None  # None when unknown (the order is gone, or recording the error failed)
    error: str  # safe and one line (describe())
    runs: int  # erroring attempts in a row; 0 when not recorded (dry run, or the record failed)
    exit_status: ExitStatus = ExitStatus.ERROR  # the error's own, for a command about this one order


Outcome = tuple[str, Result | OrderFailure | None]


@dataclass
class Worker:
    """What one worker thread owns: its database connection, its SumUp client, its verifier."""

    db: Database
    client: SumUpClient
    verifier: Verifier


class Workers:
    """Per-thread resources, created on a thread's first task and closed together at the end."""

    def __init__(self, make: Callable[[], Worker]) -> None:
        self._make = make
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[Worker] = []

    def get(self) -> Worker:
        worker = getattr(self._local, "worker", None)
        if worker is None:
            worker = self._local.worker = self._make()
            with self._lock:
                self._all.append(worker)
        return worker

    def drop(self) -> None:
        """Forget this thread's worker (its connection is gone): the next task makes a new one."""
        worker = getattr(self._local, "worker", None)
        if worker is None:
            return
        self._local.worker = None
        with self._lock:
            self._all.remove(worker)
        worker.client.close()
        worker.db.close()

    def close(self) -> None:
        with self._lock:
            workers, self._all = self._all, []
        for worker in workers:
            worker.client.close()
            worker.db.close()


def attempt_order(workers: Workers, settings: Settings, attempt: Attempt, order_id: int, *,
                  seen_last_checked_at: datetime | object | None = NOTICED, dry_run: bool = False,
                  console: bool = True) -> Outcome:
    """Claim, verify, record and release one order, on the calling thread's worker. A lost database
    connection is raised (the worker is dropped first, so the next attempt reconnects); anything else
    is this order's trouble, recorded and returned as an OrderFailure. `seen_last_checked_at`: claim
    only if nobody checked the order since it was selected (a sweep). `console`: False when the
    command prints its own line for a failure."""
    worker = workers.get()
    # The whole attempt holds the order in this process (orders/lease.py): watch's asks and its minute's
    # sweep share a lease owner, and a lease of ours that no thread holds was left by a lost connection.
    claim = contextlib.nullcontext(True) if dry_run else leased(
        worker.db, attempt, order_id, seen_last_checked_at=seen_last_checked_at)
    try:
        with claim as ours:
            if not ours:
                return CLAIMED, None
            try:
                return VERIFIED, worker.verifier.verify(order_id)
            except DatabaseUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - one order's trouble must not stop the run or the service
                return ERROR, _failed(worker, settings, attempt, order_id, exc, dry_run=dry_run, console=console)
    except DatabaseUnavailable:
        workers.drop()
        raise
    except Exception as exc:  # noqa: BLE001 - the claim's own trouble, likewise
        return ERROR, _failed(worker, settings, attempt, order_id, exc, dry_run=dry_run, console=console)


def _failed(worker: Worker, settings: Settings, attempt: Attempt, order_id: int, exc: Exception, *,
            dry_run: bool, console: bool) -> OrderFailure:
    error = describe(exc)
    exit_status = exc.exit_status if isinstance(exc, PayverifyError) else ExitStatus.ERROR
    log.error("order.error", run_id=attempt.run_id, order_id=order_id, error=error, exc_info=True, console=console)
    if dry_run:  # writes nothing, not even the error
        return OrderFailure(order_id, _order_number(worker.db, order_id), error, 0, exit_status)
    return record_failure(worker.db, settings, attempt, order_id, error, exit_status=exit_status)


def describe(exc: Exception) -> str:
    """Safe to store and show: our own errors carry vetted messages; others only their type. One line."""
    text = str(exc) if isinstance(exc, PayverifyError) else f"unexpected {type(exc).__name__}"
    return one_line(text, ERROR_MAX_CHARS)


def _order_number(db: Database, order_id: int) -> str | None:
    """A dry run names its erroring orders too, reading only."""
    try:
        with db.transaction() as tx:
            found = tx.one("order_number_by_id", order_id=order_id)
    except DatabaseError:
        return None
    return found["order_number"] if found else None


def record_failure(db: Database, settings: Settings, attempt: Attempt, order_id: int, error: str, *,
                   exit_status: ExitStatus = ExitStatus.ERROR) -> OrderFailure:
    """Audit the failed attempt, count it in the order's error streak (alerting staff when it is long
    enough) and move the order back in the queue (it is retried next run)."""
    try:
        with db.transaction() as tx:
            streak = record_error(tx, settings, attempt, order_id, error)
    except DatabaseError:
        return OrderFailure(order_id, None, error, 0, exit_status)  # the lease expires by itself
    return OrderFailure(order_id, streak.order_number, error, streak.runs, exit_status)

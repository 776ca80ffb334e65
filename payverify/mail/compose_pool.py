"""Worker processes that compose mail during a burst, so rendering does not hold the GIL that the
verification threads need (a confirmation is ~10 ms of pure CPU; SumUp's answers are I/O).

A small run never starts them: the senders compose in their own threads until they have been busy
for BUSY_STREAK messages in a row without finding the outbox empty. Then worker_count() processes are
spawned (fresh interpreters: no fork of a threaded process, no inherited connections), niced so the
verification and the database come first; composed messages come back as bytes, and each sender has
its next row composed while it sends the current one. The workers get the settings with every secret
removed, see no database and no SMTP server, and change nothing: the sending thread still claims,
sends and marks each row, so a lost worker costs only its time. If the pool breaks (a worker
killed), the senders compose in-thread again for the rest of the run. Workers idle for
RETIRE_AFTER_SECONDS are shut down (a watch runs for weeks, its bursts last minutes); the next
burst starts them again.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import time
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import fields, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog

from payverify.config import Settings
from payverify.mail import message as mime
from payverify.mail.compose import compose
from payverify.secret import Secret

if TYPE_CHECKING:
    from payverify.mail.render import Renderer

log = structlog.get_logger("payverify.mail.compose_pool")

# Messages composed back to back (the outbox never found empty) before worker processes are worth
# their start-up (~0.4 s of CPU each for the imports).
BUSY_STREAK = 25
# A composition takes milliseconds; one that takes this long means the worker is stuck.
COMPOSE_TIMEOUT_SECONDS = 60.0
# Composing is the run's batch work: the verification threads and the database come first for the CPU.
WORKER_NICENESS = 10
# Workers that composed nothing for this long are shut down: their memory is the service's between bursts.
RETIRE_AFTER_SECONDS = 300.0


def worker_count(smtp_connections: int) -> int:
    """One process per SMTP session, at most one per core (they run niced: verification comes first)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(smtp_connections, cores))


def without_secrets(settings: Settings) -> Settings:
    """What a worker may know: everything rendering needs, no credential of any kind."""
    secrets = [f.name for f in fields(settings) if isinstance(getattr(settings, f.name), Secret)]
    cleared: dict[str, Any] = dict.fromkeys(secrets)
    return replace(settings, **cleared)


class ComposePool:
    """Shared by a run's mail threads; `compose` returns None when the caller should compose itself."""

    def __init__(self, settings: Settings, processes: int, *, retire_after: float = RETIRE_AFTER_SECONDS) -> None:
        self._settings = without_secrets(settings)
        self._processes = processes
        self._retire_after = retire_after
        self._lock = threading.Lock()
        self._streak = 0
        self._last_busy = time.monotonic()
        self._pool: ProcessPoolExecutor | None = None
        self._ready: Future[None] | None = None
        self._broken = False

    def busy(self) -> None:
        """A sender claimed a row: one more in a busy streak; at BUSY_STREAK, start the workers."""
        with self._lock:
            self._streak += 1
            self._last_busy = time.monotonic()
            if self._streak < BUSY_STREAK or self._pool is not None or self._broken:
                return
            self._pool = ProcessPoolExecutor(self._processes, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_start_worker, initargs=(self._settings, os.getpid()))
            # Until the workers have imported what they need, the senders go on composing themselves.
            self._ready = self._pool.submit(_ready)
            log.info("mail.compose_pool_started", processes=self._processes)
            self._ready.add_done_callback(partial(_say_ready, time.monotonic()))

    def idle(self) -> None:
        """A sender found nothing due: the streak ends, and workers idle for retire_after are shut down."""
        with self._lock:
            self._streak = 0
            idle_for = time.monotonic() - self._last_busy
            if self._pool is None or idle_for < self._retire_after:
                return
            pool, self._pool, self._ready = self._pool, None, None
        # Nothing is in flight: every compose began after a busy() and takes milliseconds.
        pool.shutdown(wait=True, cancel_futures=True)
        log.info("mail.compose_pool_retired", idle_seconds=round(idle_for))

    def start(self, row: dict[str, Any], tickets: list[dict[str, Any]] | None) -> Future[mime.Composed] | None:
        """Begin composing in a worker; None when none is running (not started, starting, or lost)."""
        with self._lock:
            pool, ready = self._pool, self._ready
            if self._broken or pool is None or ready is None or not ready.done():
                return None
        try:
            ready.result()  # a worker that could not start: lost
            return pool.submit(_compose, row, tickets)
        except (BrokenProcessPool, RuntimeError, CancelledError) as exc:  # RuntimeError: shut down meanwhile
            if not self._retired(pool):
                self._lost(exc)
            return None

    def finish(self, started: Future[mime.Composed]) -> mime.Composed | None:
        """The message a worker composed; None when the worker was lost (compose it yourself). What
        composing raised in the worker (a template bug, a bad address) is raised here as it is."""
        try:
            return started.result(timeout=COMPOSE_TIMEOUT_SECONDS)
        except CancelledError:  # its pool was retired or closed under it
            return None
        except (BrokenProcessPool, TimeoutError) as exc:
            self._lost(exc)
            return None

    def compose(self, row: dict[str, Any], tickets: list[dict[str, Any]] | None) -> mime.Composed | None:
        started = self.start(row, tickets)
        return None if started is None else self.finish(started)

    def _retired(self, pool: ProcessPoolExecutor) -> bool:
        """Whether this pool was shut down on purpose (idle, or the run ending), not lost."""
        with self._lock:
            return self._pool is not pool

    def _lost(self, exc: BaseException) -> None:
        with self._lock:
            first, self._broken = not self._broken, True
        if first:
            log.warning("mail.compose_pool_lost", error=type(exc).__name__)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _say_ready(begun: float, ready: Future[None]) -> None:
    if not ready.cancelled() and ready.exception() is None:
        log.info("mail.compose_pool_ready", seconds=round(time.monotonic() - begun, 3))


# ---- in the worker process ------------------------------------------------------------------------
_worker: tuple[Settings, Renderer] | None = None


def _start_worker(settings: Settings, parent: int) -> None:
    global _worker
    from payverify.mail.render import Renderer

    _worker = (settings, Renderer(settings))
    with contextlib.suppress(OSError):  # not allowed here: same priority, slower verification at worst
        os.nice(WORKER_NICENESS)
    # A parent killed outright (SIGKILL, OOM) cannot shut the pool down: do not outlive it.
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _ready() -> None:
    """The first task: returns once the worker has started (its imports done)."""


def _compose(row: dict[str, Any], tickets: list[dict[str, Any]] | None) -> mime.Composed:
    assert _worker is not None, "worker not started"
    settings, renderer = _worker
    return compose(row, tickets, settings, renderer)

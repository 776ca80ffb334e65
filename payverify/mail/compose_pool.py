"""Worker processes that compose mail during a burst, so rendering does not hold the GIL that the
verification threads need (a confirmation is ~10 ms of pure CPU; SumUp's answers are I/O).

A small run never starts them: the senders compose in their own threads until they have been busy
for BUSY_STREAK messages in a row without finding the outbox empty. Then worker_count() processes are
spawned (fresh interpreters: no fork of a threaded process, no inherited connections), niced so the
verification and the database come first; composed messages come back as bytes, and each sender has
its next row composed while it sends the current one. The workers get the settings with every secret
removed and start with an environment without any (mail/secretless_spawn.py), see no database and
no SMTP server, and change nothing: the sending thread still claims,
sends and marks each row, so a lost worker costs only its time. If the pool breaks (a worker
killed, or silent for COMPOSE_WAIT_SECONDS), its workers are killed and the senders compose
in-thread for the rest of the burst; the next burst starts fresh workers. Workers idle for
RETIRE_AFTER_SECONDS are shut down (a watch runs for weeks, its bursts last minutes); the next
burst starts them again. No shutdown waits on a worker for more than SHUTDOWN_GRACE_SECONDS.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import fields, replace
from functools import partial
from multiprocessing.connection import wait as mp_wait
from typing import TYPE_CHECKING, Any

import structlog

from payverify.config import Settings
from payverify.mail import message as mime
from payverify.mail.compose import compose
from payverify.mail.rows import OutgoingRow
from payverify.mail.secretless_spawn import SecretlessSpawnContext
from payverify.secret import Secret

if TYPE_CHECKING:
    from payverify.mail.render import Renderer

log = structlog.get_logger("payverify.mail.compose_pool")

# Messages composed back to back (the outbox never found empty) before worker processes are worth
# their start-up (~0.4 s of CPU each for the imports).
BUSY_STREAK = 25
# A composition takes milliseconds (a second on a loaded host); a worker silent this long is stuck,
# and the sender composes the message itself.
COMPOSE_WAIT_SECONDS = 10.0
# What a worker gets to exit when its pool is shut down (retired, or the run ending) before SIGKILL.
SHUTDOWN_GRACE_SECONDS = 2.0
MANAGER_JOIN_SECONDS = 2.0
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
    """Shared by a run's mail threads; `start` returns None when the caller should compose itself."""

    def __init__(self, settings: Settings, processes: int, *, retire_after: float = RETIRE_AFTER_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = without_secrets(settings)
        self._processes = processes
        self._retire_after = retire_after
        self._clock = clock  # for how long the workers have been idle; injectable so tests never wait
        self._lock = threading.Lock()
        self._streak = 0
        self._last_busy = clock()
        self._pool: ProcessPoolExecutor | None = None
        self._ready: Future[None] | None = None
        self._broken = False  # until the senders next find the outbox empty: no new workers

    def busy(self) -> None:
        """A sender claimed a row: one more in a busy streak; at BUSY_STREAK, start the workers."""
        with self._lock:
            self._streak += 1
            self._last_busy = self._clock()
            if self._streak < BUSY_STREAK or self._pool is not None or self._broken:
                return
            pool = ProcessPoolExecutor(self._processes, mp_context=SecretlessSpawnContext(),
                                       initializer=_start_worker, initargs=(self._settings, os.getpid()))
            try:
                # Until the workers have imported what they need, the senders go on composing themselves.
                self._ready = pool.submit(_ready)
            except OSError as exc:  # out of processes or file descriptors: the senders compose this burst
                self._broken = True
                log.warning("mail.compose_pool_lost", error=type(exc).__name__)
                threading.Thread(target=_dispose, args=(pool, 0.0), daemon=True).start()
                return
            self._pool = pool
            log.info("mail.compose_pool_started", processes=self._processes)
            self._ready.add_done_callback(partial(_say_ready, time.monotonic()))

    def idle(self) -> None:
        """A sender found nothing due: the burst is over (after a lost pool the next one may start
        workers again), and workers idle for retire_after are shut down."""
        with self._lock:
            self._streak = 0
            rearmed, self._broken = self._broken, False
            idle_for = self._clock() - self._last_busy
            pool = self._pool if idle_for >= self._retire_after else None
            if pool is not None:
                self._pool, self._ready = None, None
        if rearmed:
            log.info("mail.compose_pool_rearmed")  # the next burst starts workers again
        if pool is None:
            return
        # Nothing should be in flight (every compose began after a busy() and takes milliseconds); a
        # worker that does not exit is killed in the background: the sender never waits for it.
        threading.Thread(target=_dispose, args=(pool, SHUTDOWN_GRACE_SECONDS), daemon=True,
                         name="compose-retire").start()
        log.info("mail.compose_pool_retired", idle_seconds=round(idle_for))

    def start(self, row: OutgoingRow, tickets: list[dict[str, Any]] | None) -> Future[mime.Composed] | None:
        """Begin composing in a worker; None when none is running (not started, starting, or lost)."""
        with self._lock:
            pool, ready = self._pool, self._ready
            if self._broken or pool is None or ready is None or not ready.done():
                return None
        try:
            ready.result()  # a worker that could not start: lost
            return pool.submit(_compose, row, tickets)
        except (BrokenProcessPool, RuntimeError, CancelledError) as exc:  # RuntimeError: shut down meanwhile
            self._lost(pool, exc)
            return None

    def finish(self, started: Future[mime.Composed]) -> mime.Composed | None:
        """The message a worker composed; None when the worker was lost or is stuck (compose it
        yourself: at most COMPOSE_WAIT_SECONDS lost). What composing raised in the worker (a template
        bug, a bad address) is raised here as it is."""
        try:
            return started.result(timeout=COMPOSE_WAIT_SECONDS)
        except CancelledError:  # its pool was retired or closed under it
            return None
        except (BrokenProcessPool, TimeoutError) as exc:
            with self._lock:
                pool = self._pool
            if pool is not None:
                self._lost(pool, exc)
            return None

    def _lost(self, pool: ProcessPoolExecutor, exc: BaseException) -> None:
        """A worker died or hangs: kill them all (they hold nothing but their time, and a stuck one
        would block every later shutdown), and leave the composing to the senders until the burst ends."""
        with self._lock:
            if self._pool is not pool:  # retired or closed on purpose, or already given up
                return
            self._pool, self._ready, self._broken = None, None, True
        log.warning("mail.compose_pool_lost", error=type(exc).__name__)
        _dispose(pool, 0.0)

    def close(self) -> None:
        """At the end of a run: bounded, whatever the workers do (a stuck one is killed)."""
        with self._lock:
            pool, self._pool, self._ready = self._pool, None, None
        if pool is not None:
            _dispose(pool, SHUTDOWN_GRACE_SECONDS)


def _dispose(pool: ProcessPoolExecutor, grace: float) -> None:
    """Shut `pool` down without waiting on it: its workers get `grace` seconds to exit, then SIGKILL
    (which ends a stopped process too). The pool's manager thread then ends by itself, so neither a
    sender nor the interpreter's exit waits on a hung worker."""
    # The executor's own map of its processes is the only handle on them it gives.
    workers = list((getattr(pool, "_processes", None) or {}).values())
    manager: threading.Thread | None = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    alive: dict[Any, int] = {}
    for worker in workers:
        with contextlib.suppress(ValueError):  # already closed
            alive[worker.sentinel] = worker.pid
    deadline = time.monotonic() + grace
    while alive and (left := deadline - time.monotonic()) > 0:
        for sentinel in mp_wait(list(alive), timeout=left):
            alive.pop(sentinel, None)
    for pid in alive.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if alive:
        log.warning("mail.compose_workers_killed", processes=len(alive))
    if manager is not None:  # it reaps the workers; with them gone it ends at once
        manager.join(timeout=MANAGER_JOIN_SECONDS)


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


def _compose(row: OutgoingRow, tickets: list[dict[str, Any]] | None) -> mime.Composed:
    assert _worker is not None, "worker not started"
    settings, renderer = _worker
    return compose(row, tickets, settings, renderer)

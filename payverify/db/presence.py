"""This process's row in payverify_processes while it runs: what frees a dead process's claims at once.

An order lease and an outbox claim name their owner (host:pid:run_id). A thread of this process, on a
connection of its own, writes the row's seen_at every BEAT_SECONDS; a clean exit deletes the row. A
claim whose owner has no row seen in ALIVE_SECONDS is free to the next run (queries.sql: claim_order,
claim_outbox_row): that process was killed, crashed, or is stopped. A stopped process loses its claims
too, which is safe: a settle is guarded, and a sender checks its claim again just before SMTP.

Sooner on the same machine: at its start and at every beat, a process asks the kernel whether the
other payverify processes of its machine (same boot, same pid namespace) still run, and deletes the
row of any whose pid is gone or now belongs to another program. A run started after a crash on the
same host takes the dead one's claims at once; from another host it takes ALIVE_SECONDS.

Plain rows, one short transaction per beat: no session state, no advisory lock, so it works the same
through a transaction-pooling PgBouncer, where one server session serves many clients.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

import structlog

from payverify.db.connection import Database, Tx
from payverify.errors import DatabaseError, DatabaseUnavailable

log = structlog.get_logger("payverify.db.presence")

BEAT_SECONDS = 5.0
# A few beats missed before a live process's claims are taken: a loaded machine, a slow commit or a
# short database outage must not cost it its work. The bound on how long a dead process's claims wait.
ALIVE_SECONDS = 20
# How long the row of a process that died elsewhere stays (retention): long enough to see what died.
SILENT_HOURS = 24


def machine() -> str | None:
    """Where a pid means this process and no other: host name, kernel boot and pid namespace. None
    where the kernel does not say (no /proc): then only ALIVE_SECONDS tells a dead process."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            boot = fh.read().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{socket.gethostname()}/{boot}/{namespace}"


def _stat(pid: int) -> tuple[str, int] | None:
    """A process's state letter and when the kernel started it (clock ticks since boot), from
    /proc/PID/stat; None when there is no such process or it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after "pid (comm)": comm may hold spaces and brackets
    try:
        return fields[0], int(fields[19])  # fields 3 and 22 of proc(5)
    except (IndexError, ValueError):
        return None


def pid_started(pid: int) -> int | None:
    stat = _stat(pid)
    return stat[1] if stat else None


def is_gone(pid: int, started: int | None) -> bool:
    """True only when sure: no process has the pid, it is a zombie (killed, not yet reaped by its
    parent), or the one that has it now started at another time (the pid was reused)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's: it runs, and its details may be hidden from us
        pass
    stat = _stat(pid)
    if stat is None:
        return False
    state, now_started = stat
    return state in ("Z", "X") or (started is not None and now_started != started)


class Presence:
    """`with Presence(...)`: the process is seen alive from the start of the block to its end."""

    def __init__(self, connect: Callable[[], Database], *, owner: str, host: str, command: str,
                 beat_seconds: float = BEAT_SECONDS) -> None:
        self._connect = connect
        self._owner = owner
        self._machine = machine()
        self._params: dict[str, Any] = {
            "owner": owner, "host": host, "command": command, "machine": self._machine, "pid": os.getpid(),
            "pid_started": pid_started(os.getpid()) if self._machine else None}
        self._beat_seconds = beat_seconds
        self._db: Database | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="presence", daemon=True)

    def __enter__(self) -> Presence:
        # The first beat before any claim: a claim made before it would look like a dead process's.
        self._db = self._connect()
        try:
            self._beat(self._db)
        except BaseException:
            self._db.close()
            raise
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=self._beat_seconds)
        if self._thread.is_alive():  # stuck in a beat: the row goes silent by itself
            return
        try:
            if self._db is None:
                self._db = self._connect()
            with self._db.transaction() as tx:
                tx.run("process_gone", owner=self._owner)
        except (DatabaseError, DatabaseUnavailable) as exc:  # silent in ALIVE_SECONDS all the same
            log.info("presence.not_removed", error=str(exc))
        finally:
            if self._db is not None:
                self._db.close()

    def _beat(self, db: Database) -> None:
        """Seen now; and the rows of this machine's processes that are gone, deleted."""
        with db.transaction() as tx:
            tx.run("process_seen", **self._params)
            self._forget_the_dead(tx)

    def forget_the_dead(self, db: Database) -> None:
        """Now, not at the next beat: the rows of this machine's processes that are gone, deleted, so
        their claims are free (a command waiting on a claim asks this before trying again)."""
        with db.transaction() as tx:
            self._forget_the_dead(tx)

    def _forget_the_dead(self, tx: Tx) -> None:
        if self._machine is None:
            return
        others = tx.all("processes_on_machine", machine=self._machine, owner=self._owner, alive_seconds=ALIVE_SECONDS)
        for other in others:
            if is_gone(other["pid"], other["pid_started"]):
                tx.run("process_gone", owner=other["owner"])
                log.warning("presence.found_dead", owner=other["owner"], command=other["command"],
                            started_at=other["started_at"].isoformat(), seen_at=other["seen_at"].isoformat(),
                            console=False)

    def _run(self) -> None:
        """Beat until stopped; a lost connection is made again at the next beat. Never raises."""
        wait = self._beat_seconds
        while not self._stop.wait(wait):
            try:
                if self._db is None:
                    self._db = self._connect()
                self._beat(self._db)
                wait = self._beat_seconds
            except Exception as exc:  # noqa: BLE001 - the beat must go on whatever happened to one of them
                error = str(exc) if isinstance(exc, DatabaseError | DatabaseUnavailable) else type(exc).__name__
                log.warning("presence.beat_failed", error=error, console=False)
                if self._db is not None:
                    self._db.close()
                    self._db = None
                wait = 1.0  # a dropped connection is made again at once, well within ALIVE_SECONDS

"""This process's row in payverify_processes while it runs: what frees a dead process's claims at once.

An order lease and an outbox claim name their owner (host:pid:run_id). A thread of this process, on a
connection of its own, writes the row's seen_at every BEAT_SECONDS; a clean exit deletes the row. A
claim whose owner was not seen for ALIVE_SECONDS is free to the next run (queries.sql: claim_order,
claim_outbox_row): that process was killed, crashed, or is stopped. A stopped process loses its claims
too, which is safe: a settle is guarded, and a sender checks its claim again just before SMTP.

Plain rows, one short transaction per beat: no session state, no advisory lock, so it works the same
through a transaction-pooling PgBouncer, where one server session serves many clients.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

import structlog

from payverify.db.connection import Database
from payverify.errors import DatabaseError, DatabaseUnavailable

log = structlog.get_logger("payverify.db.presence")

BEAT_SECONDS = 5.0
# A few beats missed before a live process's claims are taken: a loaded machine, a slow commit or a
# short database outage must not cost it its work. The bound on how long a dead process's claims wait.
ALIVE_SECONDS = 20
# How long the row of a process that died stays (retention): long enough to see what died, and when.
SILENT_HOURS = 24


class Presence:
    """`with Presence(...)`: the process is seen alive from the start of the block to its end."""

    def __init__(self, connect: Callable[[], Database], *, owner: str, host: str, command: str,
                 beat_seconds: float = BEAT_SECONDS) -> None:
        self._connect = connect
        self._params = {"owner": owner, "host": host, "command": command}
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

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=self._beat_seconds)
        if self._thread.is_alive():  # stuck in a beat: the row goes silent by itself
            return
        try:
            if self._db is None:
                self._db = self._connect()
            with self._db.transaction() as tx:
                tx.run("process_gone", owner=self._params["owner"])
        except (DatabaseError, DatabaseUnavailable) as exc:  # silent in ALIVE_SECONDS all the same
            log.info("presence.not_removed", error=str(exc))
        finally:
            if self._db is not None:
                self._db.close()

    def _beat(self, db: Database) -> None:
        with db.transaction() as tx:
            tx.run("process_seen", **self._params)

    def _run(self) -> None:
        """Beat until stopped; a lost connection is made again at the next beat. Never raises."""
        while not self._stop.wait(self._beat_seconds):
            try:
                if self._db is None:
                    self._db = self._connect()
                self._beat(self._db)
            except Exception as exc:  # noqa: BLE001 - the beat must go on whatever happened to one of them
                error = str(exc) if isinstance(exc, DatabaseError | DatabaseUnavailable) else type(exc).__name__
                log.warning("presence.beat_failed", error=error, console=False)
                if self._db is not None:
                    self._db.close()
                    self._db = None

"""Where `payverify watch` hears of returns: the connection its poll runs on, and `NOTIFY payverify`
when it can be had.

LISTEN needs a server session that stays the client's. Behind a transaction pooler (PgBouncer's usual
mode) a client has a server session only for the length of a transaction, so a LISTEN there would
hear nothing, silently. So the notifications come through PAYVERIFY_LISTEN_DATABASE_URL when it is set
(a direct connection, used for LISTEN only); else through the poll's own connection unless that is
behind a pooler, in which case watch relies on its poll alone and says so once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from payverify.db import Database

log = structlog.get_logger("payverify.modes.watch")
CHANNEL = "payverify"

_said = threading.Event()  # the "polling only" line, once per process


class Listening:
    """`db` runs the poll's queries; `notified(timeout)` waits for a NOTIFY (or only the timeout)."""

    def __init__(self, db: Database, listener: Database | None, stop: threading.Event) -> None:
        self.db = db
        self._listener = listener
        self._stop = stop

    @classmethod
    def open(cls, connect: Callable[[], Database], connect_direct: Callable[[], Database] | None,
             stop: threading.Event, *, interval: float) -> Listening:
        db = connect()
        try:
            if connect_direct is not None:
                listener: Database | None = connect_direct()
            elif db.behind_pooler():
                listener = None
                if not _said.is_set():
                    _said.set()
                    log.warning("watch.polling_only", interval=interval,
                                problem="PAYVERIFY_DATABASE_URL goes through a connection pooler, where LISTEN "
                                        "hears nothing: watch looks for returns every PAYVERIFY_WATCH_INTERVAL "
                                        "seconds; set PAYVERIFY_LISTEN_DATABASE_URL to a direct connection for "
                                        "the site's NOTIFY")
            else:
                listener = db
            if listener is not None:
                try:
                    listener.listen(CHANNEL)
                except BaseException:
                    if listener is not db:
                        listener.close()
                    raise
        except BaseException:
            db.close()
            raise
        if listener is db:  # autocommit from now on: each poll is its own transaction
            return cls(db, db, stop)
        return cls(db, listener, stop)

    def notified(self, timeout: float) -> bool:
        """Until a NOTIFY, `timeout` seconds or SIGTERM; True when a NOTIFY came."""
        if self._listener is None:
            self._stop.wait(timeout)
            return False
        return self._listener.notified(timeout)

    def close(self) -> None:
        if self._listener is not None and self._listener is not self.db:
            self._listener.close()
        self.db.close()

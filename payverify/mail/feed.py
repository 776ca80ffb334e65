"""The signal between a sweep and its mail workers (payverify/mail/pipeline.py): "something was
queued" and "nothing more will be", with the deadline for sending what is left."""

from __future__ import annotations

import threading
import time
from datetime import datetime

# How long a worker with nothing to send waits before it looks again without being poked.
IDLE_POLL_SECONDS = 1.0


class MailFeed:
    """What the sweep tells the mail workers: "I queued something" (poke) and "I am done" (finish)."""

    def __init__(self, deadline: float, fresh_since: datetime | None = None) -> None:
        self._cond = threading.Condition()
        self._pokes = 0
        self._done = False
        self._deadline = deadline
        self._fresh_since = fresh_since

    @property
    def fresh_since(self) -> datetime | None:
        """While the sweep runs, only mail queued since then (its own); after it, all that is due."""
        with self._cond:
            return None if self._done else self._fresh_since

    @property
    def done(self) -> bool:
        with self._cond:
            return self._done

    @property
    def deadline(self) -> float:
        with self._cond:
            return self._deadline

    def mark(self) -> int:
        """Taken before looking in the outbox, so a poke during the look is not missed."""
        with self._cond:
            return self._pokes

    def poke(self) -> None:
        with self._cond:
            self._pokes += 1
            self._cond.notify_all()

    def finish(self, deadline: float) -> None:
        """Nothing more will be queued; what is queued may still be sent until `deadline`."""
        with self._cond:
            self._done = True
            self._pokes += 1  # look once more: what was queued last, and the older rows now allowed
            self._deadline = deadline
            self._cond.notify_all()

    def pause(self, seconds: float) -> bool:
        """Wait up to `seconds` (a worker backing off); False once the feed has finished."""
        with self._cond:
            if not self._done:
                self._cond.wait(timeout=seconds)
            return not self._done

    def wait_for_more(self, mark: int) -> bool:
        """After an empty look that started at `mark`: True to look again, False when nothing more comes."""
        with self._cond:
            if self._pokes == mark and not self._done:
                self._cond.wait(timeout=max(0.0, min(IDLE_POLL_SECONDS, self._deadline - time.monotonic())))
            return self._pokes != mark or not self._done

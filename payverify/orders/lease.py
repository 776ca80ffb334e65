"""An order's lease: one asker of an order at a time, across processes and within one.

Across processes: the lease row (payverify_order_state; claim_order), free when
it lapsed or when its owner process was not seen alive lately (db/presence.py: killed, crashed,
stopped). Within a process every thread claims with the same owner (watch's asks and its minute's
sweep alike), so the process also keeps the orders its threads have in hand: only the thread that put
an order there claims it. A lease of this process's own on an order no thread has in hand was left by
a lost connection (the record that releases it never ran), and the claim takes it back at once rather
than waiting for it to lapse. Correctness does not rest on any of this: the settle is guarded.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import datetime

from payverify import faults
from payverify.db import Database
from payverify.db.presence import ALIVE_SECONDS
from payverify.orders.settle import Attempt

_lock = threading.Lock()
_in_hand: set[tuple[str, int]] = set()  # (lease owner, order id): a thread of this process has it
NOTICED = object()  # an order noticed (watch), not selected with its last check
# A lease's length is only the backstop: a claim dies with its process sooner (db/presence.py). It
# outlasts any one order's ask (timeouts, retries, a capped Retry-After), so a live asker keeps it.
LEASE_SECONDS = 300


@contextlib.contextmanager
def leased(db: Database, attempt: Attempt, order_id: int, *,
           seen_last_checked_at: datetime | object | None = NOTICED) -> Iterator[bool]:
    """Inside: whether the order's lease is this attempt's. With `seen_last_checked_at` (a sweep: the
    order as selected), not if another run checked it since. Any exit gives the order back to the
    process's other threads; the lease itself is released by the attempt's record (settle.py)."""
    key = (attempt.lease_owner, order_id)
    with _lock:
        taken = key in _in_hand
        _in_hand.add(key)
    if taken:  # another thread of this process is asking about it right now
        yield False
        return
    try:
        with db.transaction() as tx:
            tx.run("ensure_order_state", order_id=order_id)
            noticed = seen_last_checked_at is NOTICED
            claimed = tx.one("claim_order", order_id=order_id, owner=attempt.lease_owner,
                             lease_seconds=LEASE_SECONDS, alive_seconds=ALIVE_SECONDS, with_seen=not noticed,
                             seen_last_checked_at=None if noticed else seen_last_checked_at)
        if claimed is not None:
            faults.point("after_claim")
        yield claimed is not None
    finally:
        with _lock:
            _in_hand.discard(key)

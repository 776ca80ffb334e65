"""The stuck-orders digest: orders left in pending_verification beyond PAYVERIFY_STUCK_MINUTES.

At most one digest an hour across every host and overlapping run: the check and the insert happen
under one advisory lock.
"""

from __future__ import annotations

from payverify.config import Settings
from payverify.db import Database
from payverify.mail import outbox
from payverify.mail.kinds import ALERT_STUCK

DIGEST_EVERY_MINUTES = 60
MAX_LISTED = 200


def queue_stuck_digest(settings: Settings, db: Database) -> int:
    """Queue a digest if orders are stuck and none was queued in the last hour; returns orders listed."""
    minutes = settings.policy.stuck_minutes
    with db.transaction() as tx:
        tx.run("take_digest_lock")
        if tx.one("recent_alert_of_kind", kind=ALERT_STUCK, minutes=DIGEST_EVERY_MINUTES):
            return 0
        stuck = tx.all("stuck_orders", minutes=minutes, limit=MAX_LISTED)
        if not stuck:
            return 0
        orders = [{"order_id": r["id"], "order_number": r["order_number"], "stuck_minutes": r["stuck_minutes"],
                   "created_at": r["created_at"], "last_checked_at": r["last_checked_at"],
                   "checks": r["checks"] or 0, "last_http_status": r["last_http_status"],
                   "last_sumup_status": r["last_sumup_status"], "last_outcome": r["last_outcome"],
                   "last_reason": r["last_reason"]} for r in stuck]
        outbox.queue(tx, settings, outbox.OutboxMessage(
            # De-duplicated by the lock and the last-hour check above, not by a key.
            kind=ALERT_STUCK, dedup_key=None, order_id=None,
            recipients=settings.alert_recipients,
            context={"orders": orders, "stuck_minutes": minutes, "truncated": len(stuck) >= MAX_LISTED}))
    return len(orders)

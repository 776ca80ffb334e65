"""Every kind of mail payverify sends, in one registry: its template, its subject, who gets it, how it
is de-duplicated. Every other module asks here (the decision names kinds, the outbox builds keys, the
renderer finds subjects and templates, the sender tells customer mail from alerts)."""

from __future__ import annotations

from dataclasses import dataclass

CONFIRMATION = "order_confirmation"
PAYMENT_FAILED = "payment_failed"
ALERT_REVIEW = "admin_alert_amount_mismatch"
ALERT_LATE_PAYMENT = "admin_alert_late_payment"
ALERT_RECONNECT = "admin_alert_reconnect_sumup"
ALERT_STUCK = "admin_alert_stuck_orders"
ALERT_MAIL_FAILED = "admin_alert_mail_failed"
ALERT_ORDER_ERROR = "admin_alert_order_error"
ALERT_RECONCILE = "admin_alert_reconcile"

# What a de-duplication key is per. None: every row is its own message (a digest, a resend).
PER_ORDER, PER_ARTIST, PER_OUTBOX_ROW = "order", "artist", "outbox"


@dataclass(frozen=True)
class MailType:
    name: str  # also the template's name: templates/emails/<name>.html and .txt
    subject: str  # a Jinja template of one line; alerts start with "[payverify] " so staff can filter them
    to_customer: bool  # True: the order's e-mail address; False: staff (PAYVERIFY_ALERT_EMAIL)
    dedup_per: str | None

    def key(self, ident: object) -> str:
        """The de-duplication key of this mail type for one order, artist or outbox row."""
        assert self.dedup_per is not None, f"{self.name} is not de-duplicated"
        return f"{self.name}:{self.dedup_per}:{ident}"


REGISTRY: dict[str, MailType] = {t.name: t for t in (
    MailType(CONFIRMATION, "Your tickets for {{ event.title }} – order {{ order_number }}", True, PER_ORDER),
    MailType(PAYMENT_FAILED, "Your payment for order {{ order_number }} did not go through – no tickets issued",
             True, PER_ORDER),
    MailType(ALERT_REVIEW, "[payverify] Order {{ order_number }} needs manual review", False, PER_ORDER),
    MailType(ALERT_LATE_PAYMENT,
             "[payverify] Late payment: order {{ order_number }} was {{ status }}, tickets now issued",
             False, PER_ORDER),
    MailType(ALERT_RECONNECT,
             "[payverify] SumUp refused the credentials for {{ artist.name }} – orders not verified",
             False, PER_ARTIST),
    MailType(ALERT_STUCK,
             "[payverify] {{ orders|length }} order(s) stuck in pending_verification"
             " over {{ '%g'|format(stuck_minutes) }} min:"
             " {{ orders|map(attribute='order_number')|join(', ') }}",
             False, None),
    MailType(ALERT_MAIL_FAILED,
             "[payverify] Mail not delivered: {{ failed.kind }}"
             "{% if failed.order_number %} for order {{ failed.order_number }}{% endif %}",
             False, PER_OUTBOX_ROW),
    MailType(ALERT_ORDER_ERROR,
             "[payverify] Order {{ order_number or 'id %s'|format(order_id) }} could not be"
             " verified in {{ runs }} runs in a row",
             False, PER_ORDER),
    MailType(ALERT_RECONCILE,
             "[payverify] Reconciliation: {{ discrepancies|length }} new discrepanc"
             "{{ 'y' if discrepancies|length == 1 else 'ies' }} between SumUp and the orders",
             False, None),
)}
MAIL_TYPES = frozenset(REGISTRY)  # their names, as the outbox's kind column holds them


"""Benchmark: the CPU cost of building one order confirmation with one ticket.

Builds the complete message the outbox sender would hand to SMTP (subject, text and HTML from the
templates, the tickets PDF with its QR code, the .ics entry, the MIME message) through
`OutboxSender._build`, from a context made the way a settle queues it (the real decision table,
`notices.messages_for`, a JSON round trip like the jsonb column). No database, no SMTP: the ticket
rows come from a stub. Reports the CPU time (time.process_time) of the imports the mail path loads,
of the first message in the process (the renderer included) and the median of the next N messages,
each for a new order with its own ticket code. Exits non-zero above the steady-state target.

    /work/main/.venv-3.11/bin/python benchmarks/render.py            # from the repository root
    /work/main/.venv-3.11/bin/python benchmarks/render.py --messages 500 --target-ms 10
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib
import json
import statistics
import sys
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

# This checkout's payverify, not whichever one the virtualenv's editable install points at.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from payverify.config import Settings  # noqa: E402
from payverify.mail import outbox  # noqa: E402
from payverify.mail.kinds import CONFIRMATION  # noqa: E402
from payverify.mail.sender import OutboxSender  # noqa: E402
from payverify.models import Order, OrderItem  # noqa: E402
from payverify.orders import decision, notices  # noqa: E402
from payverify.orders.tickets import CODE_BYTES  # noqa: E402
from payverify.sumup.answer import Answer, AnswerKind  # noqa: E402
from payverify.sumup.checkout import checkout_from_dict  # noqa: E402

SETTINGS = Settings(site_url="https://tickets.example.je", site_name="Jersey Live",
                    mail_from="Jersey Live <tickets@tickets.example.je>")
NOW = datetime(2026, 11, 26, 20, 0, tzinfo=UTC)
# What the first message loads lazily (sender.py and render.py import them on first use).
MAIL_MODULES = ("payverify.mail.render", "payverify.mail.ticket_pdf", "payverify.mail.calendar_entry")


class TicketsOnly:
    """Stands in for the database: `_build` reads one order's tickets in a transaction, nothing else."""

    def __init__(self) -> None:
        self.tickets: list[dict] = []

    @contextmanager
    def transaction(self):
        yield self

    def all(self, name: str, **params: object) -> list[dict]:
        assert name == "order_tickets", name
        return self.tickets


def confirmation_row(n: int) -> tuple[dict, list[dict]]:
    """Outbox row n (a confirmation for a new one-ticket order) and its ticket, as the sender reads them."""
    number = f"JE-{n:06d}"
    order = Order(id=1000 + n, order_number=number, status="pending_verification", email=f"fan{n}@example.com",
                  first_name="Ann", last_name="Le Brocq", total=Decimal("22.50"), currency="GBP",
                  sumup_checkout_id=f"chk-{n}", created_at=NOW - timedelta(minutes=10),
                  updated_at=NOW - timedelta(minutes=1), event_id=7,
                  event_title="Harbour Lights", event_venue="Fort Regent, St Helier",
                  event_starts_at=NOW + timedelta(days=16), event_ends_at=NOW + timedelta(days=16, hours=3),
                  artist_id=3, artist_name="Lua Verde", artist_merchant_code="MH4H92C7", artist_uses_oauth=False)
    items = [OrderItem(id=n, ticket_type_id=11, ticket_type_name="Standing", quantity=1, unit_price=Decimal("22.50"))]
    checkout = checkout_from_dict({
        "id": f"chk-{n}", "checkout_reference": number, "amount": Decimal("22.50"), "currency": "GBP",
        "merchant_code": "MH4H92C7", "status": "PAID", "transaction_code": "TEENSK4W2K",
        "transactions": [{"id": "t1", "transaction_code": "TEENSK4W2K", "amount": Decimal("22.50"),
                          "currency": "GBP", "status": "SUCCESSFUL", "merchant_code": "MH4H92C7"}]})
    answer = Answer(kind=AnswerKind.CHECKOUT, http_status=200, checkout=checkout)
    verdict = decision.decide(order, answer, NOW, SETTINGS.policy)
    message, = (m for m in notices.messages_for(verdict, order, items, checkout, SETTINGS) if m.kind == CONFIRMATION)
    context = json.loads(json.dumps(message.context, default=outbox._json_default))  # as the jsonb column gives it
    row = {"id": n, "kind": CONFIRMATION, "order_id": order.id, "recipients": list(message.recipients),
           "context": context, "message_id": f"<order-confirmation.{n}@tickets.example.je>", "attempts": 1,
           "created_at": NOW, "too_old": False}
    # A door code like new_code() makes (32 URL-safe characters), but the same on every run.
    code = base64.urlsafe_b64encode(hashlib.sha256(number.encode()).digest()[:CODE_BYTES]).decode()
    tickets = [{"code": code, "ticket_type": "Standing", "holder_name": order.holder_name}]
    return row, tickets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200, help="steady-state messages to time (default 200)")
    parser.add_argument("--target-ms", type=float, default=10.0, help="steady-state CPU ms per message to meet")
    args = parser.parse_args()

    import payverify

    print(f"payverify from {Path(payverify.__file__).parent}")
    db = TicketsOnly()
    sender = OutboxSender(SETTINGS, db)  # type: ignore[arg-type]  # the stub has what _build uses
    rows = [confirmation_row(n) for n in range(args.messages + 1)]  # made before the clock runs

    started = time.process_time()
    for name in MAIL_MODULES:
        importlib.import_module(name)
    imports_ms = (time.process_time() - started) * 1000
    from payverify.mail.render import Renderer

    def build(n: int, renderer: Renderer) -> None:
        row, db.tickets = rows[n]
        sender._build(row, renderer)

    started = time.process_time()
    renderer = Renderer(SETTINGS)  # once per send_due, as the sender does it
    build(0, renderer)
    first_ms = (time.process_time() - started) * 1000

    costs = []
    for n in range(1, args.messages + 1):
        started = time.process_time()
        build(n, renderer)
        costs.append((time.process_time() - started) * 1000)
    steady = statistics.median(costs)

    print(f"imports of the mail path: {imports_ms:.1f} ms CPU (once per process)")
    print(f"first message: {first_ms:.1f} ms CPU (renderer, templates and fonts loaded)")
    print(f"steady state: {steady:.1f} ms CPU per one-ticket confirmation (median of {len(costs)}; "
          f"p90 {statistics.quantiles(costs, n=10)[-1]:.1f} ms)")
    met = steady <= args.target_ms
    print(f"target <= {args.target_ms:g} ms -> {'MET' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the CPU cost of composing one order confirmation with one ticket (or --tickets N).

Composes the complete message the outbox sender hands to SMTP (subject, text and HTML from the
templates, the tickets PDF with its QR codes, the .ics entry, the MIME message written out as the
bytes SMTP carries) with `mail.compose.compose`, as a sender or a compose worker does, from rows made
the way a settle queues them (payverify_dev/mail_samples.py: the real decision table,
`notices.messages_for`, a JSON round trip like the jsonb column's). No database, no SMTP. Reports the CPU
time (time.process_time) of the imports the mail path loads, of the first message in the process
(the renderer included) and the median of the next N messages, each for a new order with its own
ticket codes. Exits non-zero above the steady-state target.

    .venv-3.11/bin/python benchmarks/render.py            # from the repository root
    .venv-3.11/bin/python benchmarks/render.py --messages 500 --tickets 2
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from pathlib import Path

# This checkout's payverify, not whichever one the virtualenv's editable install points at.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from payverify.mail.compose import compose  # noqa: E402
from payverify_dev.mail_samples import SETTINGS, confirmation_row  # noqa: E402

# What the first message loads lazily (sender.py and render.py import them on first use).
MAIL_MODULES = ("payverify.mail.render", "payverify.mail.ticket_pdf", "payverify.mail.calendar_entry")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200, help="steady-state messages to time (default 200)")
    parser.add_argument("--tickets", type=int, default=1, help="tickets per order (default 1, as the target)")
    parser.add_argument("--target-ms", type=float, default=10.0, help="steady-state CPU ms per message to meet")
    args = parser.parse_args()

    import payverify

    print(f"payverify from {Path(payverify.__file__).parent}")
    rows = [confirmation_row(n, tickets=args.tickets) for n in range(args.messages + 1)]  # before the clock runs

    started = time.process_time()
    for name in MAIL_MODULES:
        importlib.import_module(name)
    imports_ms = (time.process_time() - started) * 1000
    from payverify.mail.render import Renderer

    def build(n: int, renderer: Renderer) -> None:
        row, tickets = rows[n]
        compose(row, tickets, SETTINGS, renderer)

    started = time.process_time()
    renderer = Renderer(SETTINGS)  # once per sender or worker process
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
    print(f"steady state: {steady:.1f} ms CPU per {args.tickets}-ticket confirmation (median of {len(costs)}; "
          f"p90 {statistics.quantiles(costs, n=10)[-1]:.1f} ms)")
    met = steady <= args.target_ms
    print(f"target <= {args.target_ms:g} ms -> {'MET' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

"""Named fault points for crash and fault-injection tests; inert unless PAYVERIFY_FAULT names one.

PAYVERIFY_FAULT=name        SIGKILL this process when it reaches `name`
PAYVERIFY_FAULT=name:raise  raise InjectedFault there instead

This is the one list of them. In production the variable is unset, and each point is one string
comparison with an empty string.
  after_claim            modes/sweep.py       an order's lease taken, SumUp not asked yet
  after_sumup_answer     orders/verify.py     SumUp answered, nothing written yet
  before_settle_commit   orders/settle.py     the settle transaction written, not committed
  after_settle_commit    orders/verify.py     the settle transaction committed
  after_token_response   sumup/credentials.py SumUp issued a new token pair, not stored yet
  after_worker_composed  mail/sender.py       a compose worker process made a message, not sent yet
  after_smtp_accept      mail/sender.py       the SMTP server accepted a message, not marked sent
  before_mark_sent       mail/sender.py       about to mark an outbox row sent
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("PAYVERIFY_FAULT", "")


class InjectedFault(RuntimeError):
    pass


def point(name: str) -> None:
    if not _SPEC:
        return
    target, _, mode = _SPEC.partition(":")
    if target != name:
        return
    if mode == "raise":
        raise InjectedFault(f"injected fault at {name}")
    os.kill(os.getpid(), signal.SIGKILL)

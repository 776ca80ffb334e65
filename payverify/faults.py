"""Named fault points for crash and fault-injection tests; inert unless PAYVERIFY_FAULT names one.

PAYVERIFY_FAULT=name        SIGKILL this process when it reaches `name`
PAYVERIFY_FAULT=name:raise  raise InjectedFault there instead
PAYVERIFY_FAULT=name:stop   SIGSTOP this process there (every thread), for the test to act on a process
                            held at a known point, then SIGCONT or SIGKILL it: no timing luck
PAYVERIFY_FAULT=name:hang   block the thread that reaches `name` for good (the rest of the process runs
                            on: a stalled loop, for the watchdog); it logs `fault.hang` first
PAYVERIFY_FAULT=name@N:...  the same, only the N-th time this process reaches `name` (else every time)

This is the one list of them. In production the variable is unset, and each point is one string
comparison with an empty string.
  after_due_batch        modes/sweep.py       a batch of due orders selected, none started yet
  after_claim            orders/lease.py      an order's lease taken (sweep or watch), SumUp not asked yet
  after_sumup_answer     orders/verify.py     SumUp answered, nothing written yet
  before_settle_commit   orders/settle.py     the settle transaction written, not committed
  after_settle_commit    orders/verify.py     the settle transaction committed
  after_token_response   sumup/credentials.py SumUp issued a new token pair, not stored yet
  after_worker_composed  mail/sender.py       a compose worker process made a message, not sent yet
  before_smtp_send       mail/sender.py       an outbox row claimed and composed, not handed to SMTP yet
  after_smtp_accept      mail/sender.py       the SMTP server accepted a message, not marked sent
  before_mark_sent       mail/sender.py       about to mark an outbox row sent
  in_reconcile_account   modes/reconcile_account.py  an account's history being read (`:raise`: that account fails)
  after_reconcile_account modes/reconcile.py  an account's findings and cursor committed, the next not begun
"""

from __future__ import annotations

import itertools
import os
import signal
import threading

_SPEC = os.environ.get("PAYVERIFY_FAULT", "")
_target, _, _mode = _SPEC.partition(":")
_name, _, _nth = _target.partition("@")
_reached = itertools.count(1)  # next() is atomic under the GIL: threads count each arrival once


class InjectedFault(RuntimeError):
    pass


def point(name: str) -> None:
    if not _SPEC or name != _name:
        return
    if _nth and next(_reached) != int(_nth):
        return
    if _mode == "raise":
        raise InjectedFault(f"injected fault at {name}")
    if _mode == "hang":
        import structlog

        structlog.get_logger("payverify.faults").warning("fault.hang", point=name)
        threading.Event().wait()
    if _mode == "stop":
        # To this thread, not the process: a process-directed SIGSTOP may be taken by another thread
        # that is not running yet, while this one goes on past the point (a message sent, say).
        signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
        return
    os.kill(os.getpid(), signal.SIGKILL)

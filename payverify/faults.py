"""Named fault points for crash and fault-injection tests; inert unless PAYVERIFY_FAULT names one.

PAYVERIFY_FAULT=name        SIGKILL this process when it reaches `name`
PAYVERIFY_FAULT=name:raise  raise InjectedFault there instead
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

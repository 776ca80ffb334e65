"""A multiprocessing context whose processes start with an environment that holds no secret.

multiprocessing's spawn start method execs the new interpreter with the parent's whole environment:
the database URL, the SumUp key and OAuth secret, the SMTP and heartbeat URLs. The compose workers
parse customer data (jinja2, fpdf2, css-inline) and need none of it. Scrubbing os.environ inside the
worker would come too late: /proc/PID/environ keeps the block a process was started with. So the one
function through which multiprocessing starts an interpreter (`multiprocessing.util.spawnv_passfds`,
used for the worker and for the resource tracker it starts first) is replaced, for the length of one
launch and under a lock, by one that passes an allow-list of the environment (os.posix_spawn takes
it explicitly). The parent's own environment is never touched, so its other threads never see it
change. payverify starts no other multiprocessing processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from multiprocessing import popen_spawn_posix, resource_tracker, util
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any

# What a worker's interpreter may see: where programs, libraries and temporary files are, the
# locale and time zone, and the interpreter's own settings (PYTHONHASHSEED, PYTHONPATH...). Nothing
# payverify reads (PAYVERIFY_*, SUMUP_*), no proxy, no credentials directory.
KEPT = frozenset({"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "LD_LIBRARY_PATH"})
KEPT_PREFIXES = ("LC_", "PYTHON")

_LAUNCH = threading.Lock()


def worker_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of `environ` a worker starts with."""
    return {name: value for name, value in environ.items() if name in KEPT or name.startswith(KEPT_PREFIXES)}


def _spawn_without_secrets(path: bytes | str, args: Sequence[Any], passfds: Sequence[int]) -> int:
    """multiprocessing.util.spawnv_passfds, with the allow-listed environment instead of the parent's.
    The fds multiprocessing hands over are made inheritable for the moment of the spawn only."""
    fds = sorted({int(fd) for fd in passfds})
    were = [os.get_inheritable(fd) for fd in fds]
    try:
        for fd in fds:
            os.set_inheritable(fd, True)
        # As spawnv_passfds does: the child starts with default SIGPIPE/SIGXFSZ handling, like any exec.
        return os.posix_spawn(path, list(args), worker_environment(os.environ),
                              setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
    finally:
        for fd, was in zip(fds, were, strict=True):
            os.set_inheritable(fd, was)


@contextlib.contextmanager
def _spawning_without_secrets() -> Iterator[None]:
    with _LAUNCH:
        spawnv = util.spawnv_passfds
        util.spawnv_passfds = _spawn_without_secrets
        try:
            yield
        finally:
            util.spawnv_passfds = spawnv


class _Popen(popen_spawn_posix.Popen):
    def _launch(self, process_obj: Any) -> None:
        with _spawning_without_secrets():
            super()._launch(process_obj)  # type: ignore[misc]  # not in the stubs


class _Process(SpawnProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> _Popen:
        return _Popen(process_obj)


class SecretlessSpawnContext(SpawnContext):
    """The "spawn" context, its processes (and the resource tracker) started without secrets."""

    Process = _Process

    def __init__(self) -> None:
        super().__init__()
        # A pool's queues start the resource tracker before any worker (their locks register with
        # it): started here first, it has no secret either.
        with _spawning_without_secrets():
            resource_tracker.ensure_running()

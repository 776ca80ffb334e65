"""Logging: one canonical JSON line per order in the log file, silence on stderr, no secret anywhere."""

from __future__ import annotations

import sys
import threading

import structlog

from payverify.logconfig import MASK, Redactor


def test_redactor_masks_known_secrets_anywhere():
    """The log redactor masks secret values inside nested strings (defence in depth)."""
    redact = Redactor(["hunter2-password"])
    with structlog.testing.capture_logs(processors=[redact]) as logs:
        structlog.get_logger().error("db.down", error="auth failed for hunter2-password",
                                     extra={"k": ["x hunter2-password"]})
    assert logs[0]["error"] == "auth failed for ***"
    assert logs[0]["extra"] == {"k": ["x ***"]}


def test_redactor_keeps_every_secret_added_concurrently():
    """Worker threads registering tokens at the same moment (each refreshed an artist's token) lose
    none of them: every one is masked afterwards. The switch interval is tiny so that threads
    interleave inside an add, where an unlocked read-modify-write drops secrets."""
    threads_n, rounds = 32, 20
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for r in range(rounds):
            redact = Redactor([f"configured-secret-{i:04d}" for i in range(200)])
            barrier = threading.Barrier(threads_n)
            secrets = [f"token-{r:02d}-{i:04d}-refreshed" for i in range(threads_n)]

            def add(redact: Redactor, barrier: threading.Barrier, secret: str) -> None:
                barrier.wait()
                redact.add(secret)

            workers = [threading.Thread(target=add, args=(redact, barrier, s)) for s in secrets]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            with structlog.testing.capture_logs(processors=[redact]) as logs:
                structlog.get_logger().info("sumup.token", seen=" ".join(secrets))
            assert logs[0]["seen"] == " ".join([MASK] * threads_n), f"round {r}: a secret was lost"
    finally:
        sys.setswitchinterval(old_interval)

"""Logging: one canonical JSON line per order in the log file, silence on stderr, no secret anywhere."""

from __future__ import annotations

import structlog

from payverify.logconfig import Redactor


def test_redactor_masks_known_secrets_anywhere():
    """The log redactor masks secret values inside nested strings (defence in depth)."""
    redact = Redactor(["hunter2-password"])
    with structlog.testing.capture_logs(processors=[redact]) as logs:
        structlog.get_logger().error("db.down", error="auth failed for hunter2-password",
                                     extra={"k": ["x hunter2-password"]})
    assert logs[0]["error"] == "auth failed for ***"
    assert logs[0]["extra"] == {"k": ["x ***"]}

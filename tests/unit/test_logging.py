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


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def masked(redact: Redactor, text: str) -> str:
    return redact._clean(text)


def test_redactor_forgets_rotated_tokens_an_hour_after_they_were_last_registered():
    """A token learnt at run time is masked until an hour after it was last registered; configured
    secrets are masked for ever, and a token in use (registered again on each read) never lapses."""
    clock = FakeClock()
    redact = Redactor(["configured-dsn-password"], clock=clock)
    redact.add("rotated-token-one")
    redact.add("live-token-in-use")
    for _ in range(12):  # the live token is read (so registered) every ten minutes
        clock.now += 600
        redact.add("live-token-in-use")
    clock.now += 1
    redact.add("newly-issued-token")  # a registration is when old ones are let go
    text = "configured-dsn-password rotated-token-one live-token-in-use newly-issued-token"
    assert masked(redact, text) == f"{MASK} rotated-token-one {MASK} {MASK}"
    assert "rotated-token-one" not in redact.secrets

    clock.now += 1_000_000  # weeks later: the configured secret is still masked
    redact.add("yet-another-token")
    assert masked(redact, "configured-dsn-password") == MASK


def test_redactor_registering_a_configured_secret_never_makes_it_lapse():
    """A configured secret that is also registered at run time (doctor reading a token that equals
    the platform key) stays masked after the hour."""
    clock = FakeClock()
    redact = Redactor(["platform-api-key"], clock=clock)
    redact.add("platform-api-key")
    clock.now += 7200
    redact.add("something-else")
    assert masked(redact, "key platform-api-key") == f"key {MASK}"


def test_redactor_stays_bounded_over_weeks_of_token_rotation():
    """Five artists' tokens rotated every hour for four weeks: the redactor holds about the last
    hour's (and a bit: it lets go at most every six minutes), not four weeks' worth."""
    clock = FakeClock()
    redact = Redactor(["configured-secret"], clock=clock)
    for hour in range(24 * 28):
        for artist in range(5):
            redact.add(f"access-{hour}-{artist}")
            redact.add(f"refresh-{hour}-{artist}")
        clock.now += 3600
        assert len(redact.secrets) <= 1 + 2 * 5 * 2
    assert masked(redact, f"access-{hour}-4 refresh-{hour}-0") == f"{MASK} {MASK}"


def test_stderr_shows_text_from_orders_and_sumup_escaped():
    """A warning on stderr (which cron mails to a person) that names an order number or quotes SumUp
    shows their control characters escaped, on one line; the log file keeps them as JSON escapes."""
    import logging

    from payverify.logconfig import build_logging_config

    config = build_logging_config(None, "INFO", False, Redactor([]))
    spec = dict(config["formatters"]["console"])
    console = spec.pop("()")(**spec)
    record = logging.LogRecord("payverify", logging.WARNING, __file__, 0, "", None, None)
    # As structlog's stdlib bridge hands an event to the formatter.
    record.msg = {"event": "sumup.odd\nforged line", "order_number": "JE-1\x1b[2K", "status": "PAID\u202e"}
    record._from_structlog, record._logger, record._name = True, None, "warning"
    shown = console.format(record)
    assert "\x1b" not in shown and "\u202e" not in shown and len(shown.splitlines()) == 1
    assert "sumup.odd\\nforged line" in shown and "JE-1\\x1b[2K" in shown and "PAID\\u202e" in shown

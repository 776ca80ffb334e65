"""doctor's checks: an unmet need skips a check, a check that breaks fails alone and the next still runs."""

from __future__ import annotations

from payverify.exitcodes import ExitStatus
from payverify.modes.doctor.framework import Check, Found, Need, Result


def _broken(found: Found, check: Check) -> Result:
    raise KeyError("a bug in the check")


def test_a_broken_check_fails_with_its_exit_status_and_the_next_runs():
    found = Found()
    always = Need(lambda f: True, "")
    broken = Check("broken", ExitStatus.SCHEMA, _broken, (always,))
    after = Check("after", ExitStatus.ERROR, lambda f, check: check.ok("fine"), (always,))
    results = [r for check in (broken, after) for r in check.results(found)]
    assert [(r.check, r.status, r.exit_status) for r in results] == [
        ("broken", "FAIL", ExitStatus.SCHEMA), ("after", "ok", ExitStatus.OK)]
    assert results[0].reason == "internal error (KeyError); details are in the log file"


def test_an_unmet_need_skips_the_check_with_its_reason():
    ran: list[str] = []
    check = Check("needs more", ExitStatus.ERROR, lambda f, c: ran.append("ran") or c.ok(""),
                  (Need(lambda f: False, "needs the database"),))
    assert [(r.status, r.reason) for r in check.results(Found())] == [("skip", "needs the database")]
    assert ran == []

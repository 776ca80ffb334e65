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


def test_one_artists_unexpected_error_fails_that_artists_line_only():
    """The artists' check gives a line per artist: a bug met probing one (a body it cannot read, say)
    fails that artist's line, and the artists after it still get theirs."""
    from payverify.modes.doctor.framework import Line
    from payverify.modes.doctor.sumup import _guarded_artist
    from payverify.sumup.credentials import TokenOwner

    class Broken:
        def call(self, *args, **kwargs):
            raise KeyError("a bug in the probe")

    line = Line("SumUp token of artist 'A' (id 1)", ExitStatus.CONFIG)
    result = _guarded_artist(line, None, Broken(), TokenOwner(1, "A", oauth=True), {})
    assert (result.check, result.status, result.exit_status) == (line.name, "FAIL", ExitStatus.CONFIG)
    assert result.reason == "internal error (KeyError); details are in the log file"

"""The real entry point, `payverify.cli.main`, run in this process under click's CliRunner isolation.

Exit codes, stdout and stderr are the contract's (main() turns every failure into one stderr line and
a named status), without the cost of a new interpreter: the unit tier's way to test command parsing
and output. End-to-end runs that need a process of their own (crashes, overlap) keep starting one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from subprocess import CompletedProcess

import structlog
from click.testing import CliRunner

from payverify.cli import main


@dataclass(frozen=True)
class Ran:
    """What a `payverify` run left: the same three names as subprocess.CompletedProcess."""

    returncode: int
    stdout: str
    stderr: str


def invoke(*args: str, env: Mapping[str, str | None] | None = None) -> Ran:
    """`payverify ARGS` with the process environment minus every PAYVERIFY_/SUMUP_ setting, plus `env`
    (a None value removes a variable)."""
    cleared: dict[str, str | None] = {k: None for k in os.environ if k.startswith(("PAYVERIFY_", "SUMUP_"))}
    runner = CliRunner()
    code: int | str | None = 0
    with runner.isolation(env={**cleared, **(env or {})}) as (out, err, _):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code
        finally:
            _forget_logging()
        stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    return Ran(code if isinstance(code, int) else 1, stdout, stderr)


def one_line(result: Ran | CompletedProcess[str]) -> str:
    """The single stderr line of a failed command, after checking there is no traceback."""
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def _forget_logging() -> None:
    """The run configured logging onto the isolated stderr, which closes with it: start the next test
    from an unconfigured process, as a new one would."""
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
        handler.close()
    structlog.reset_defaults()

"""The `payverify` command: thin click commands over the core.

Every failure becomes one line on stderr and a named exit status (payverify.exitcodes); a traceback
goes only to the log file.
"""

from __future__ import annotations

import contextlib
import sys

import click

from payverify.cli import admin, database, reconciling  # noqa: F401 - they register doctor, config, db grants, reconcile
from payverify.cli.commands import cli
from payverify.errors import PayverifyError
from payverify.exitcodes import ExitStatus


def _fail(message: str, status: ExitStatus) -> None:
    from payverify.logconfig import redact
    from payverify.printable import printable

    # An error can name an order number or quote SumUp: one line, whatever they hold.
    click.echo(printable(f"payverify: {redact(message)}"), err=True)
    sys.exit(int(status))


PR_SET_DUMPABLE = 4  # linux/prctl.h


def no_core_dumps() -> None:
    """A core dump would hold every secret (the database URL, SumUp keys and tokens, the SMTP
    password): none, whatever limit the shell or the unit gave (the compose workers inherit it).
    On Linux the process is also made not dumpable, so its /proc/PID/environ and memory are root's
    alone: a compose worker, which runs as the same user and parses customer data, cannot read the
    secrets from its parent either (the workers themselves start without any)."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):  # no such limit here: nothing to lower
        pass
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def main(argv: list[str] | None = None, command: click.Command = cli, prog_name: str = "payverify") -> None:
    """Run `command` (the payverify group, or another command such as the development demo) under
    the contract: one line on stderr and a named exit status for every failure, never a traceback."""
    no_core_dumps()
    try:
        status = command.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.UsageError as exc:
        # Not exc.show(): click prints usage, a hint and the error over four lines, and the contract
        # is one line on stderr that names the bad value.
        message = " ".join(line.strip() for line in exc.format_message().splitlines() if line.strip())
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        _fail(message + hint, ExitStatus.USAGE)
    except click.exceptions.Abort:
        _fail("interrupted", ExitStatus.INTERRUPTED)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except PayverifyError as exc:
        _fail(str(exc), exc.exit_status)
    except KeyboardInterrupt:
        _fail("interrupted", ExitStatus.INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a traceback on stderr
        _log_internal_error(exc)
        _fail(f"internal error ({type(exc).__name__}); details are in the log file", ExitStatus.ERROR)
    sys.exit(int(status or 0))


def _log_internal_error(exc: Exception) -> None:
    import logging

    # Only the file handler should carry the traceback; stderr gets the one line above.
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            record = logging.LogRecord("payverify", logging.ERROR, __file__, 0, "internal error",
                                       None, (type(exc), exc, exc.__traceback__))
            handler.handle(record)

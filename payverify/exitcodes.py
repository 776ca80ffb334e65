"""Exit statuses of every payverify command, named in one place (documented in the README)."""

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    # An unexpected internal error: one line on stderr, the traceback in the log file.
    ERROR = 1
    # Malformed command line (click's own usage errors use 2 as well).
    USAGE = 2
    # Missing or invalid configuration: the message names the variable.
    CONFIG = 3
    # The database cannot be reached (or went away mid-run).
    DATABASE_UNAVAILABLE = 4
    # The site's tables do not match the contract, or payverify's schema is not current.
    SCHEMA = 5
    # `check`/`resend`: no such order.
    ORDER_NOT_FOUND = 6
    # SumUp could not be asked: `check` got no definitive answer, or every request of a sweep failed.
    SUMUP_UNAVAILABLE = 7
    # `resend`: the order's status does not allow it (only completed orders have tickets to send).
    NOT_ALLOWED = 8
    INTERRUPTED = 130

"""The project's own exceptions. Each carries a one-line message safe to show a person (no secrets)."""

from __future__ import annotations

from payverify.exitcodes import ExitStatus


class PayverifyError(Exception):
    """Base class: `str(err)` is the one line shown on stderr; `exit_status` is the command's exit code."""

    exit_status: ExitStatus = ExitStatus.ERROR


class ConfigError(PayverifyError):
    exit_status = ExitStatus.CONFIG


class DatabaseUnavailable(PayverifyError):
    exit_status = ExitStatus.DATABASE_UNAVAILABLE


class DatabaseError(PayverifyError):
    """A query failed for a reason other than connectivity (constraint, timeout, ...)."""

    exit_status = ExitStatus.ERROR


class UniqueViolation(DatabaseError):
    pass


class PermissionDenied(DatabaseError):
    """The database user lacks a right (SQLSTATE 42501): the role is set up wrong, not the data.
    `refused` is the database's own line (e.g. "permission denied for table orders_order")."""

    exit_status = ExitStatus.CONFIG

    def __init__(self, message: str, *, refused: str) -> None:
        super().__init__(message)
        self.refused = refused


class SchemaMismatch(PayverifyError):
    exit_status = ExitStatus.SCHEMA


class OrderNotFound(PayverifyError):
    exit_status = ExitStatus.ORDER_NOT_FOUND


class OrderBusy(PayverifyError):
    """`check`: another live run kept the order's lease (it is asking SumUp about it) for too long."""

    exit_status = ExitStatus.SUMUP_UNAVAILABLE


class OrderNotVerified(PayverifyError):
    """`check`: the order's attempt raised (recorded as its error streak); the error's own exit status."""

    def __init__(self, message: str, *, exit_status: ExitStatus) -> None:
        super().__init__(message)
        self.exit_status = exit_status


class NotAllowed(PayverifyError):
    exit_status = ExitStatus.NOT_ALLOWED


class SumUpUnavailable(PayverifyError):
    """SumUp gave no usable reply after retries (connection error, timeout, 5xx, 429).

    `failure` is one of payverify.sumup.answer.FAILURES, set where the failure is seen: the
    metrics count by it, so it is never guessed back out of the message."""

    exit_status = ExitStatus.SUMUP_UNAVAILABLE

    def __init__(self, reason: str, *, failure: str, http_status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.failure = failure
        self.http_status = http_status


class InvalidGrant(PayverifyError):
    """The token endpoint refused the refresh token: the artist must reconnect SumUp."""


class TokenRefreshFailed(PayverifyError):
    """The token endpoint answered, but not with a usable token (and not invalid_grant)."""

    def __init__(self, reason: str, *, http_status: int | None = None) -> None:
        super().__init__(reason)
        self.http_status = http_status

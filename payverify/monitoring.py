"""Monitoring for cron runs: healthchecks.io heartbeat, a payverify_runs row each, a node_exporter textfile."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import requests
import structlog

from payverify.db import Database
from payverify.decision import CONFIRMATION
from payverify.errors import PayverifyError
from payverify.secret import Secret
from payverify.sumup.answer import Answer, AnswerKind

if TYPE_CHECKING:
    from payverify.mail.sender import SendReport
    from payverify.sweep import SweepReport

log = structlog.get_logger("payverify.monitoring")

# SumUp error kinds, the `kind` label. credentials: no usable token (artist disconnected, refresh failed).
ERROR_KINDS = (TIMEOUT, CONNECTION, HTTP_5XX, HTTP_429, HTTP_401, HTTP_OTHER, NOT_UNDERSTOOD, CREDENTIALS) = (
    "timeout", "connection", "http_5xx", "http_429", "http_401", "http_other", "not_understood", "credentials")


def sumup_error_kind(answer: Answer) -> str | None:
    """The kind of trouble behind a non-definitive answer; None for a definitive one or when not asked."""
    status = answer.http_status
    if answer.kind is not AnswerKind.UNKNOWN:
        return None
    if status == 429 or (status is not None and status >= 500):
        return HTTP_429 if status == 429 else HTTP_5XX
    if answer.transport_failure:  # with a status: a reply too large to read
        return NOT_UNDERSTOOD if status is not None else TIMEOUT if "timed out" in answer.reason else CONNECTION
    if status is not None:
        return {401: HTTP_401, 200: NOT_UNDERSTOOD}.get(status, HTTP_OTHER)
    return None if answer.reason.startswith("not asked") else CREDENTIALS


class Heartbeat:
    """healthchecks.io-convention pings; with no URL, no-ops. Each takes about `timeout` s at most in all
    (one retry if time is left, none after a timeout or 4xx); never raises, never logs the URL (a secret)."""

    BODY_LIMIT = 10_000  # bytes; healthchecks.io shows the body in the check's log

    def __init__(self, url: Secret | None, *, timeout: float = 5.0, session: requests.Session | None = None) -> None:
        self._url = url.reveal().rstrip("/") if url else None
        self.timeout = timeout
        self._session = session

    def start(self) -> bool:
        return self._ping("start", "/start", "")

    def success(self, summary: str = "") -> bool:
        return self._ping("success", "", summary)

    def fail(self, summary: str = "") -> bool:
        return self._ping("fail", "/fail", summary)

    def _ping(self, signal: str, suffix: str, body: str) -> bool:
        if not self._url:
            return False
        deadline = time.monotonic() + self.timeout
        for attempt in (1, 2):
            half = max(0.01, deadline - time.monotonic()) / 2  # to connect, and for the reply
            try:
                with (self._session or requests).post(self._url + suffix, data=body.encode()[:self.BODY_LIMIT],
                                                      timeout=(half, half), stream=True) as resp:
                    if 200 <= resp.status_code < 300:
                        return True
                    problem, retry = f"HTTP {resp.status_code}", resp.status_code >= 500
            except requests.Timeout:
                problem, retry = "timed out", False
            except Exception as exc:  # noqa: BLE001 - never raise; a requests error's text names the URL
                problem, retry = f"failed ({type(exc).__name__})", isinstance(exc, requests.RequestException)
            if not retry or deadline - time.monotonic() < 0.2:
                break
        log.warning("heartbeat.failed", signal=signal, problem=problem, attempts=attempt)
        return False


def record_run_start(db: Database, run_id: str, host: str, command: str) -> bool:
    """A run begins. Never raises: a database problem is logged and gives False."""
    return _best_effort(db, "run.record_start_failed", "insert_run", run_id=run_id, host=host, command=command)


def record_run_end(db: Database, run_id: str, exit_status: int, report: SweepReport | None,
                   mail: SendReport | None, sumup_errors: Mapping[str, int] | None = None) -> bool:
    """The run ends: exit status, orders verified by outcome, SumUp errors by kind, orders that errored,
    mail. Never raises."""
    outcomes = json.dumps({str(k): int(v) for k, v in report.outcomes.items()} if report else {})
    errors = json.dumps({str(k): int(v) for k, v in (sumup_errors or {}).items()})
    return _best_effort(db, "run.record_end_failed", "finish_run", run_id=run_id, exit_status=int(exit_status),
                        verified=report.verified if report else None, outcomes=outcomes, sumup_errors=errors,
                        order_errors=report.errors if report else None,
                        mail_sent=mail.sent if mail else None, mail_failed=mail.failed if mail else None)


def _best_effort(db: Database, event: str, query: str, **params) -> bool:
    try:
        with db.transaction() as tx:
            return tx.run(query, **params) == 1
    except PayverifyError as exc:  # bookkeeping must not fail a run
        log.warning(event, run_id=params["run_id"], error=str(exc))
        return False


@dataclass(frozen=True)
class Metric:  # one metric family
    name: str
    type: str  # counter, gauge or summary
    help: str
    samples: tuple[tuple[str, tuple[tuple[str, str], ...], float], ...]  # (name suffix, labels, value)


def _gauge(name: str, help: str, value: float | None) -> Metric:
    return Metric(name, "gauge", help, (("", (), float(value or 0)),))


def _by(label: str, counts: Mapping[str, float]) -> tuple:
    return tuple(("", ((label, str(k)),), float(v)) for k, v in sorted(counts.items()))


def collect_metrics(db: Database, host: str, *, command: str = "sweep") -> list[Metric]:
    """This host's runs of `command` and its last run; the outbox and due orders of the whole database."""
    who = {"host": host, "command": command}
    with db.transaction() as tx:
        runs = tx.all("metrics_runs_by_exit_status", **who)
        last = tx.one("metrics_last_run", **who) or {}
        success = tx.one("metrics_last_success", **who)["finished_epoch"]
        backlog = tx.one("outbox_backlog")
        oldest = tx.one("metrics_oldest_due_order")["age_seconds"]
        mail = tx.one("metrics_payment_to_mail", kind=CONFIRMATION)
    by_status = {"unfinished" if r["exit_status"] is None else str(r["exit_status"]): r["n"] for r in runs}
    order_errors = sum(r["order_errors"] for r in runs)
    errors = _by("kind", dict.fromkeys(ERROR_KINDS, 0) | (last.get("sumup_errors") or {}))
    return [
        Metric("payverify_runs_total", "counter", "Runs on this host by exit status (unfinished: running or killed).",
               _by("exit_status", by_status)),
        Metric("payverify_order_errors_total", "counter",
               "Orders whose verification errored (not a SumUp no-answer) in this host's runs.",
               (("", (), float(order_errors)),)),
        Metric("payverify_last_run_orders_verified", "gauge", "Orders verified in the last run, by outcome.",
               _by("outcome", last.get("outcomes") or {})),
        Metric("payverify_last_run_sumup_errors", "gauge", "Non-definitive SumUp answers, last run, by kind.", errors),
        _gauge("payverify_outbox_backlog", "Mail and alerts waiting to be sent.", backlog["pending"]),
        _gauge("payverify_outbox_failed", "Mail and alerts given up on.", backlog["failed"]),
        _gauge("payverify_oldest_due_order_age_seconds", "Age of the oldest due order (0: none).", oldest),
        Metric("payverify_payment_to_mail_seconds", "summary", "Payment to confirmation mail sent, last hour.",
               (("_count", (), float(mail["n"])), ("_sum", (), float(mail["total_seconds"])))),
        _gauge("payverify_payment_to_mail_max_seconds", "Longest of those (0: none).", mail["max_seconds"]),
        _gauge("payverify_last_success_timestamp_seconds", "End of the last run that exited 0 (0: never).", success),
        _gauge("payverify_last_run_timestamp_seconds", "End of the last run (0: never).", last.get("finished_epoch")),
    ]


_LABEL_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", '"': '\\"'})


def render_metrics(metrics: Iterable[Metric]) -> str:
    """Prometheus text exposition format 0.0.4 (HELP texts are ours: one line, no backslash)."""
    lines = []
    for m in metrics:
        lines += [f"# HELP {m.name} {m.help}", f"# TYPE {m.name} {m.type}"]
        for suffix, labels, value in m.samples:
            text = ",".join(f'{k}="{v.translate(_LABEL_ESCAPES)}"' for k, v in labels)
            number = str(int(value)) if float(value).is_integer() else repr(float(value))  # always finite
            lines.append(f"{m.name}{suffix}{'{' + text + '}' if text else ''} {number}")
    return "\n".join(lines) + "\n"


def write_metrics_file(path: str | os.PathLike, metrics: Iterable[Metric]) -> None:
    """Replace `path` atomically, mode 0644: temp file .NAME.XXXX.tmp (not *.prom) beside it, os.replace."""
    target, text = Path(path), render_metrics(metrics)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), 0o644)
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish_metrics(db: Database, host: str, path: str | None, *, command: str = "sweep") -> bool:
    """collect_metrics + write_metrics_file at the end of a run; never raises (logs a warning)."""
    if not path:
        return False
    try:
        write_metrics_file(path, collect_metrics(db, host, command=command))
    except (PayverifyError, OSError) as exc:
        log.warning("metrics.write_failed", path=str(path), error=getattr(exc, "strerror", None) or str(exc))
        return False
    return True

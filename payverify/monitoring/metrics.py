"""The node_exporter textfile: this host's runs and the outbox, in Prometheus text format, written atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from payverify.db import Database
from payverify.errors import PayverifyError
from payverify.mail.kinds import CONFIRMATION
from payverify.sumup.answer import FAILURES

log = structlog.get_logger("payverify.monitoring")


# Time to ticket: the histogram's upper bounds in seconds, and the window of sent confirmations it
# counts. A window, not a counter since the start (that would read the whole outbox each run), so its
# buckets go down as well as up: read them with histogram_quantile() as they are, not through rate().
TIME_TO_TICKET_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)
TIME_TO_TICKET_WINDOW_MINUTES = 60


@dataclass(frozen=True)
class Metric:  # one metric family
    name: str
    type: str  # counter, gauge, summary or histogram
    help: str
    samples: tuple[tuple[str, tuple[tuple[str, str], ...], float], ...]  # (name suffix, labels, value)


def _gauge(name: str, help: str, value: float | None) -> Metric:
    return Metric(name, "gauge", help, (("", (), float(value or 0)),))


def _by(label: str, counts: Mapping[str, float]) -> tuple:
    return tuple(("", ((label, str(k)),), float(v)) for k, v in sorted(counts.items()))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))  # always finite


def histogram(name: str, help: str, bounds: Sequence[float], at_most: Sequence[int], count: int,
              total: float) -> Metric:
    """A histogram family: for each upper bound (ascending) how many observations were at most it,
    then +Inf (all of them), their sum and their count."""
    buckets = tuple(("_bucket", (("le", _number(b)),), float(n)) for b, n in zip(bounds, at_most, strict=True))
    return Metric(name, "histogram", help, (*buckets, ("_bucket", (("le", "+Inf"),), float(count)),
                                            ("_sum", (), float(total)), ("_count", (), float(count))))


def collect_metrics(db: Database, host: str, *, command: str = "sweep") -> list[Metric]:
    """This host's runs of `command` and its last run; the outbox and due orders of the whole database."""
    who = {"host": host, "command": command}
    with db.transaction() as tx:
        runs = tx.all("metrics_runs_by_exit_status", **who)
        last = tx.one("metrics_last_run", **who) or {}
        success = tx.require_one("metrics_last_success", **who)["finished_epoch"]
        backlog = tx.require_one("outbox_backlog")
        oldest = tx.require_one("metrics_oldest_due_order")["age_seconds"]
        mail = tx.require_one("metrics_payment_to_mail", kind=CONFIRMATION)
        ttt = tx.require_one("metrics_time_to_ticket", kind=CONFIRMATION, bounds=list(TIME_TO_TICKET_BUCKETS),
                             window_minutes=TIME_TO_TICKET_WINDOW_MINUTES)
        reported = {r["kind"]: r["n"] for r in tx.all("reconcile_reported_by_kind")}
        reconciled = tx.require_one("metrics_last_reconcile")["finished_epoch"]
    by_status = {"unfinished" if r["exit_status"] is None else str(r["exit_status"]): r["n"] for r in runs}
    order_errors = sum(r["order_errors"] for r in runs)
    errors = _by("kind", dict.fromkeys(FAILURES, 0) | (last.get("sumup_errors") or {}))
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
        histogram("payverify_time_to_ticket_seconds",
                  "Order entering pending_verification (a pending one: SumUp's payment) to its confirmation "
                  "accepted by the SMTP server, confirmations sent in the last hour.",
                  TIME_TO_TICKET_BUCKETS, ttt["at_most"], ttt["n"], ttt["total_seconds"]),
        _gauge("payverify_last_success_timestamp_seconds", "End of the last run that exited 0 (0: never).", success),
        _gauge("payverify_last_run_timestamp_seconds", "End of the last run (0: never).", last.get("finished_epoch")),
        Metric("payverify_reconcile_discrepancies", "gauge",
               "Discrepancies between SumUp and the orders reported by reconciliation, by kind.",
               _by("kind", reported)),
        _gauge("payverify_last_successful_reconcile_timestamp_seconds",
               "End of the last reconciliation that read every account, any host (0: never).", reconciled),
    ]


_LABEL_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", '"': '\\"'})


def render_metrics(metrics: Iterable[Metric]) -> str:
    """Prometheus text exposition format 0.0.4 (HELP texts are ours: one line, no backslash)."""
    lines = []
    for m in metrics:
        lines += [f"# HELP {m.name} {m.help}", f"# TYPE {m.name} {m.type}"]
        for suffix, labels, value in m.samples:
            text = ",".join(f'{k}="{v.translate(_LABEL_ESCAPES)}"' for k, v in labels)
            lines.append(f"{m.name}{suffix}{'{' + text + '}' if text else ''} {_number(value)}")
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


# The long-running loops of `payverify watch` (payverify/liveness.py), each with a sample from the start.
WATCH_LOOPS = ("notice", "mail", "housekeeping")


def thread_errors(errors: Mapping[str, int]) -> Metric:
    """This process's exceptions survived by its long-running loops, by loop (since the process started)."""
    return Metric("payverify_thread_errors_total", "counter",
                  "Exceptions a long-running loop of payverify watch survived (logged with their traceback), "
                  "by loop, since the process started.", _by("loop", dict.fromkeys(WATCH_LOOPS, 0) | dict(errors)))


def publish_metrics(db: Database, host: str, path: str | None, *, command: str = "sweep",
                    extra: Sequence[Metric] = ()) -> bool:
    """collect_metrics (and this process's own `extra`) + write_metrics_file at the end of a run;
    never raises (logs a warning)."""
    if not path:
        return False
    try:
        write_metrics_file(path, [*collect_metrics(db, host, command=command), *extra])
    except (PayverifyError, OSError) as exc:
        log.warning("metrics.write_failed", path=str(path), error=getattr(exc, "strerror", None) or str(exc))
        return False
    return True

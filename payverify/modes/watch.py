"""`payverify watch`: a long-running service that asks SumUp about an order the moment it returns.

Every PAYVERIFY_WATCH_INTERVAL seconds (sooner on `NOTIFY payverify`) a cheap indexed query finds
orders that came back from SumUp (pending_verification) and were not asked about since, whatever
watch or anyone else knew of them before. Each is asked at once and, while SumUp still says PENDING
or gives no answer (a redirect can beat the payment), again 1, 2, 2.5, 3, 5, 10, 30 and 60 seconds
after the customer's return (after it was noticed, when that was later); then the ordinary schedule
has it. A `pending` order (the customer is still at SumUp, or paid and never came back) is not on
this fast path: the housekeeping asks it once it is five minutes old, and then as a cron tick would.
Asks go through the one attempt path a sweep uses (modes/attempt.py), so cron sweeps may keep
running beside it. Mail workers (mail/pipeline.py) send as orders settle. Every minute: the
housekeeping a cron run does (a sweep of whatever else is due, the stuck digest, the hourly
retention pass, the heartbeat, the run row, the metrics file).

SIGTERM or SIGINT: no new order is taken, asks in flight finish (at most STOP_GRACE_SECONDS), queued
mail gets a few seconds more, exit 0, within 35 s of the signal whatever is stuck (modes/shutdown.py).
A lost database: one stderr line, reconnect with backoff, carry on; nothing is half settled, since
every settle is one transaction. Any other exception in a loop (notice, mail, housekeeping) is logged
with its traceback, counted (payverify_thread_errors_total) and the loop goes on after a backoff;
under systemd the loops' ticks keep its watchdog pinged (monitoring/systemd.py).
"""

from __future__ import annotations

import faulthandler
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import structlog

from payverify.db import Database
from payverify.db.presence import ALIVE_SECONDS
from payverify.errors import DatabaseUnavailable
from payverify.exitcodes import ExitStatus
from payverify.liveness import STALL_SECONDS, Liveness
from payverify.mail.pipeline import MailPipeline
from payverify.modes.attempt import ERROR, VERIFIED, Outcome, Worker, Workers, attempt_order, describe
from payverify.modes.listening import Listening
from payverify.modes.recorded import Bookkeeping, recorded_run
from payverify.modes.retention import hourly_prune
from payverify.modes.runtime import Runtime
from payverify.modes.shutdown import Shutdown
from payverify.modes.sweep import sweep
from payverify.monitoring.metrics import thread_errors
from payverify.monitoring.systemd import Notifier, Watchdog
from payverify.orders.settle import Attempt
from payverify.orders.stuck_digest import queue_stuck_digest
from payverify.orders.verify import Result, Verifier
from payverify.sumup.credentials import RunMemory
from payverify.sumup.ratelimit import RateLimiter

log = structlog.get_logger("payverify.modes.watch")

# Seconds after the return, while SumUp says PENDING or nothing. Most payments SumUp still processes
# at the return are done within 3 s (3-D Secure): the step at 2.5 s catches one done at 2.1 s half a
# second sooner than the step at 3 s would (a p95 of 3 s cannot be had with asks only at 2 and 3).
ASK_AGAIN_AFTER = (1, 2, 2.5, 3, 5, 10, 30, 60)
# A return whose last check (someone else's) got PENDING or nothing is put on the fast schedule for
# this long; just under its last step, so an order that ran through it is not taken up again.
FAST_SECONDS = ASK_AGAIN_AFTER[-1] - 1
HOUSEKEEPING_SECONDS = 60
# The housekeeping asks an awaiting order at most this often (a never-asked one once it is this old),
# as a five-minute cron tick would: a customer still at SumUp is not asked every minute.
RECHECK_SECONDS = 300
STOP_GRACE_SECONDS = 30  # asks in flight at SIGTERM
MAIL_GRACE_SECONDS = 5  # then queued mail; what is left waits in the outbox for the next run
MAIL_BY_SECONDS = 32  # ... ending this long after the signal at the latest (exit within 35 s: modes/shutdown.py)
STOP_CHECK_SECONDS = 1.0
CLOSE_WITHIN_SECONDS = 2.0
WATCHED_MAX = 500  # orders queued or in flight at once: a burst is taken in slices, oldest first
MAX_RECONNECT_SECONDS = 30.0


@dataclass(order=True)
class _Ask:
    due: float
    order_id: int = field(compare=False)
    returned: float = field(compare=False)  # the customer's return, on time.monotonic()'s clock

    def next_due(self, now: float) -> float | None:
        """The schedule's next step after `now`; None when it has run through."""
        return next((self.returned + after for after in ASK_AGAIN_AFTER if self.returned + after > now), None)


class Watch:
    def __init__(self, rt: Runtime, stop: threading.Event) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.stop = stop
        self.attempt = rt.attempt("watch")
        self._limiter = RateLimiter(self.settings.sumup_rate, stop=stop)  # SIGTERM wakes every wait
        self._memory = RunMemory()
        self._workers = Workers(self._make_worker)
        self._queue: list[_Ask] = []  # a heap by due time
        self._watched: set[int] = set()  # queued or in flight: not noticed again
        self._in_flight: dict[Future[Outcome], _Ask] = {}
        self._passes = itertools.count(1)
        self._notifier = Notifier()  # systemd: READY=1, WATCHDOG=1 while the loops tick, STOPPING=1
        self._liveness = Liveness(self._notifier.watchdog_seconds or STALL_SECONDS)

    def _connect(self) -> Database:
        return self.rt.database(check_schema=False)

    def _make_worker(self) -> Worker:
        db = self._connect()
        client = self.rt.sumup_client(self._limiter)
        return Worker(db, client, Verifier(self.settings, db, client, self.attempt, memory=self._memory))

    # ---- the loop --------------------------------------------------------------------------------
    def run(self) -> ExitStatus:
        log.info("watch.start", run_id=self.rt.run_id, interval=self.settings.watch_interval)
        faulthandler.enable(all_threads=True)  # the watchdog's SIGABRT: every thread's stack to the journal
        shutdown = Shutdown(self.stop, on_stop=lambda: self._notifier.notify("STOPPING=1"))
        shutdown.start()
        watchdog = Watchdog(self._notifier, self._liveness)
        watchdog.start()
        pool = ThreadPoolExecutor(max_workers=self.settings.concurrency, thread_name_prefix="watch")
        listener: Listening | None = None
        try:
            with MailPipeline(self.settings, self._connect, deadline=float("inf"), keep_going=True,
                              owner=self.attempt.lease_owner, liveness=self._liveness) as mail:
                listener = self._loop(pool, mail.feed.poke)
                log.info("watch.stopping", run_id=self.rt.run_id, in_flight=len(self._in_flight))
                wait(list(self._in_flight), timeout=max(0.0, shutdown.by(STOP_GRACE_SECONDS) - time.monotonic()))
                try:
                    self._collect(mail.feed.poke)
                except Exception as exc:  # stopping anyway: what was asked is settled or asked again next start
                    log.error("watch.loop_failed", loop="notice", error=describe(exc), exc_info=True)
                    self._liveness.failed("notice")
                mail.feed.finish(deadline=min(time.monotonic() + MAIL_GRACE_SECONDS, shutdown.by(MAIL_BY_SECONDS)))
        finally:
            watchdog.close()
            for future in self._in_flight:
                future.cancel()
            # Nothing waits on a thread stuck in a hung exchange: it is left behind (see shutdown.leave).
            pool.shutdown(wait=False, cancel_futures=True)
            _bounded(lambda: listener.close() if listener is not None else None)
            _bounded(self._workers.close)
        log.info("watch.end", run_id=self.rt.run_id)
        shutdown.leave()
        return ExitStatus.OK

    def _loop(self, pool: ThreadPoolExecutor, settled: Callable[[], None]) -> Listening | None:
        """The notice loop, until SIGTERM: it survives any exception (logged with its traceback,
        counted, then a backoff), so neither a lost database nor a lock nor a bug ends the service.
        Returns the listening connections, for the caller to close."""
        listener: Listening | None = None
        housekeeping: Future[None] | None = None
        next_housekeeping = next_poll = time.monotonic()
        backoff = failure_backoff = 1.0
        self._notifier.notify("READY=1")
        while not self.stop.is_set():
            self._liveness.tick("notice")
            try:
                if listener is None:
                    listener = self._listen()
                    if backoff > 1.0:
                        log.warning("watch.database_back", run_id=self.rt.run_id)
                    backoff = 1.0
                if time.monotonic() >= next_poll:
                    self._notice(listener.db)
                    next_poll = time.monotonic() + self.settings.watch_interval
                self._submit_due(pool)
                self._collect(settled)
                if time.monotonic() >= next_housekeeping and (housekeeping is None or housekeeping.done()):
                    housekeeping = pool.submit(self._housekeeping, settled)
                    next_housekeeping = time.monotonic() + HOUSEKEEPING_SECONDS
                if self._idle(listener, until=next_poll):
                    next_poll = time.monotonic()  # NOTIFY: look now
                failure_backoff = 1.0
            except DatabaseUnavailable as exc:
                log.warning("watch.database_unavailable", error=str(exc), retry_in=backoff)
                if listener is not None:
                    _bounded(listener.close)
                    listener = None
                self._liveness.tick("notice", quiet=backoff)
                self.stop.wait(backoff)
                backoff = min(MAX_RECONNECT_SECONDS, backoff * 2)
            except Exception as exc:  # a lock or statement timeout, a bug: logged, counted, tried again
                log.error("watch.loop_failed", loop="notice", error=describe(exc), retry_in=failure_backoff,
                          exc_info=True)
                self._liveness.failed("notice")
                self._liveness.tick("notice", quiet=failure_backoff)
                self.stop.wait(failure_backoff)
                failure_backoff = min(MAX_RECONNECT_SECONDS, failure_backoff * 2)
        self._liveness.done("notice")
        if housekeeping is not None:
            housekeeping.cancel()  # not started yet: skipped; started: its sweep starts no new order
        return listener

    def _listen(self) -> Listening:
        direct = self.settings.listen_database_url
        # A direct connection for LISTEN only (nothing else runs on it): no site schema, no settings.
        return Listening.open(self._connect,
                              (lambda: Database.connect(direct, application_name="payverify-listen")) if direct
                              else None, self.stop, interval=self.settings.watch_interval)

    def _at_capacity(self) -> bool:
        return len(self._in_flight) >= 2 * self.settings.concurrency

    def _idle(self, listener: Listening, *, until: float) -> bool:
        """Wait for whatever comes first: the next poll, an ask falling due (when there is room for it),
        an ask finishing, a NOTIFY. True when a NOTIFY came."""
        now = time.monotonic()
        wake = until
        if self._queue and not self._at_capacity():
            wake = min(wake, self._queue[0].due)
        timeout = min(max(0.0, wake - now), STOP_CHECK_SECONDS)  # SIGTERM wakes no select: look every second
        if self._in_flight:
            wait(list(self._in_flight), timeout=timeout, return_when=FIRST_COMPLETED)
            return listener.notified(0)
        return listener.notified(timeout)

    def _notice(self, db: Database) -> None:
        room = WATCHED_MAX - len(self._watched)
        if room <= 0:  # memory stays flat through a burst: the rest is noticed as these finish
            return
        with db.transaction() as tx:
            rows = tx.all("watch_new_orders", exclude=list(self._watched), limit=room, fast_seconds=FAST_SECONDS,
                          alive_seconds=ALIVE_SECONDS)
        now = time.monotonic()
        for row in rows:
            self._watched.add(row["id"])
            # Noticed late (watch was stopped, or busy with a burst): the customer is still waiting, so
            # the schedule runs from now rather than being over before it started.
            since_return = max(0.0, row["since_return"])
            returned = now - since_return if since_return < ASK_AGAIN_AFTER[0] else now
            heapq.heappush(self._queue, _Ask(due=now, order_id=row["id"], returned=returned))
        if rows:
            log.info("watch.noticed", orders=len(rows))

    def _submit_due(self, pool: ThreadPoolExecutor) -> None:
        now = time.monotonic()
        while self._queue and self._queue[0].due <= now and not self.stop.is_set() and not self._at_capacity():
            ask = heapq.heappop(self._queue)
            self._in_flight[pool.submit(self._ask, ask.order_id)] = ask

    def _collect(self, settled: Callable[[], None]) -> None:
        """Done asks: ask again on the schedule while there is no definitive answer, else let the order go."""
        done = [f for f in self._in_flight if f.done()]
        for future in done:
            ask = self._in_flight.pop(future)
            try:
                ending, result = future.result()
            except DatabaseUnavailable:
                ending, result = "unavailable", None
            if ending in (VERIFIED, ERROR):
                settled()
            # No answer yet: SumUp said PENDING or nothing, another run is asking it (its lease), an
            # error, or the database went away. Whatever was decided otherwise, the order is done here.
            again = ending != VERIFIED or (isinstance(result, Result) and result.settled is not None
                                         and not result.settled.applied
                                         and result.answer.sumup_status in (None, "PENDING"))
            due = ask.next_due(time.monotonic()) if again else None
            if due is None:
                self._watched.discard(ask.order_id)
            else:
                ask.due = due
                heapq.heappush(self._queue, ask)

    # ---- one ask, on a worker thread ---------------------------------------------------------------
    def _ask(self, order_id: int) -> Outcome:
        return attempt_order(self._workers, self.settings, self.attempt, order_id)

    # ---- every minute ------------------------------------------------------------------------------
    def _housekeeping(self, settled: Callable[[], None]) -> None:
        """What a cron run does besides the fresh orders: due re-checks, the stuck digest, retention
        (hourly), the heartbeat, the run row, the metrics file. Never raises: a failed pass is logged
        and tried a minute later."""
        run_id = f"{self.rt.run_id}-{next(self._passes)}"
        # No /start: the pass is a minute's part of a service, not a job systemd or cron started.
        books = Bookkeeping(host=self.rt.host, command="watch", heartbeat_url=self.settings.heartbeat_url,
                            metrics_file=self.settings.metrics_file, metrics_command="watch",
                            extra_metrics=lambda: [thread_errors(self._liveness.errors())], ping_start=False,
                            failed="watch {run_id}: housekeeping failed ({error})")
        # Its sweep may take the whole time budget (and the asks in flight their grace) before it ticks again.
        self._liveness.tick("housekeeping", quiet=self.settings.time_budget_seconds + STOP_GRACE_SECONDS)
        try:
            with recorded_run(self._connect, run_id, books) as run:
                attempt = Attempt(run_id=run_id, host=self.rt.host, command="watch",
                                  lease_owner=self.attempt.lease_owner)
                report = sweep(self.settings, self._connect, self.rt.sumup_client, attempt, settled=settled,
                               stop=self.stop, recheck_seconds=RECHECK_SECONDS)
                run.report, run.sumup_errors = report, dict(report.sumup_errors)
                queue_stuck_digest(self.settings, run.db)
                settled()
                if not self.stop.is_set():  # stopping: it can wait for the next start
                    hourly_prune(self.settings, run.db, host=self.rt.host, run_id=run_id)
                status = ExitStatus.SUMUP_UNAVAILABLE if report.sumup_down else ExitStatus.OK
                healthy = status == ExitStatus.OK and not report.errors
                run.end(status, f"watch {run_id}: {report.verified} of {report.due} due verified" if healthy
                        else f"watch {run_id}: {report.errors} error(s), exit {int(status)}", healthy=healthy)
        except Exception as exc:  # logged, counted; the service goes on and tries again in a minute
            log.warning("watch.housekeeping_failed", run_id=run_id, loop="housekeeping", error=describe(exc),
                        exc_info=True)
            self._liveness.failed("housekeeping")
        finally:
            self._liveness.done("housekeeping")


def _bounded(close: Callable[[], object], seconds: float = CLOSE_WITHIN_SECONDS) -> None:
    """Run `close` (a connection's) on a thread of its own, waiting at most `seconds`: a connection busy
    in another, stuck thread must not hold up the stop."""
    closer = threading.Thread(target=close, name="close", daemon=True)
    closer.start()
    closer.join(seconds)

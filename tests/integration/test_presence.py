"""payverify_processes: a process's row while it runs (db/presence.py), what makes a claim free (a
dead owner, this process's own lease no thread holds), and retention of the rows of the dead. In this
process, as the run-time role (so the grants cover it); the real processes are in
reliability/test_dead_claims.py."""

from __future__ import annotations

import os
import subprocess

import pytest

from payverify.db import Database
from payverify.db.presence import ALIVE_SECONDS, SILENT_HOURS, Presence, machine, pid_started
from payverify.mail.sender import CLAIM_LEASE_SECONDS, GIVE_UP_HOURS
from payverify.modes.retention import prune
from payverify.orders.lease import leased
from payverify.orders.settle import Attempt
from payverify.secret import Secret
from tests.helpers import rows, scalar
from tests.processes import eventually

ME = "web1:1:me"


@pytest.fixture
def run_db(run_database_url):
    with Database.connect(Secret(run_database_url)) as database:
        yield database


def presence(run_database_url, owner: str = ME, beat_seconds: float = 5.0) -> Presence:
    return Presence(lambda: Database.connect(Secret(run_database_url)), owner=owner, host="web1",
                    command="sweep", beat_seconds=beat_seconds)


def process_row(db, owner: str, *, seen_seconds_ago: float = 0, on: str | None = None, pid: int = 999_999,
                started: int | None = None) -> None:
    with db.transaction() as tx:
        tx.fetch_sql("INSERT INTO payverify_processes (owner, host, command, machine, pid, pid_started, started_at, "
                     "seen_at) VALUES (%(o)s, 'web1', 'sweep', %(m)s, %(pid)s, %(st)s, now() - interval '1 hour', "
                     "now() - make_interval(secs => %(ago)s)) RETURNING owner",
                     {"o": owner, "m": on, "pid": pid, "st": started, "ago": seen_seconds_ago})


def owners(db) -> set[str]:
    return {r["owner"] for r in rows(db, "SELECT owner FROM payverify_processes")}


def test_a_process_is_seen_while_it_runs_and_gone_after_a_clean_exit(db, run_database_url):
    with presence(run_database_url, beat_seconds=0.2):
        first = rows(db, "SELECT command, machine, pid, pid_started, seen_at FROM payverify_processes "
                         "WHERE owner = %(o)s", o=ME)[0]
        assert (first["command"], first["machine"], first["pid"]) == ("sweep", machine(), os.getpid())
        assert first["pid_started"] == pid_started(os.getpid()) is not None
        eventually(lambda: scalar(db, "SELECT seen_at FROM payverify_processes WHERE owner = %(o)s", o=ME)
                   != first["seen_at"], 10, "seen again")
    assert owners(db) == set()


def test_the_rows_of_this_machines_dead_processes_go_when_a_process_starts(db, run_database_url):
    here = machine()
    gone = subprocess.Popen(["true"])
    gone.wait()
    parent = os.getppid()
    process_row(db, "web1:dead:x", on=here, pid=gone.pid, started=1)
    process_row(db, "web1:reused:x", on=here, pid=parent, started=(pid_started(parent) or 0) + 1)
    process_row(db, "web1:running:x", on=here, pid=parent, started=pid_started(parent))
    process_row(db, "web2:elsewhere:x", on="web2/another-boot/1", pid=gone.pid, started=1)
    process_row(db, "web1:unknown-start:x", on=here, pid=parent, started=None)
    with presence(run_database_url):
        assert owners(db) == {ME, "web1:running:x", "web2:elsewhere:x", "web1:unknown-start:x"}


@pytest.fixture
def leased_order(db, seed):
    """An order whose lease (four minutes left) belongs to ghost:1:x."""
    event = seed.event(seed.artist())
    order = seed.order([(seed.ticket_type(event), 1)], event_id=event)
    with db.transaction() as tx:
        tx.fetch_sql("INSERT INTO payverify_order_state (order_id, lease_owner, lease_expires_at) "
                     "VALUES (%(id)s, 'ghost:1:x', now() + interval '4 minutes') RETURNING order_id", {"id": order.id})
    return order.id


def claim(run_db, order_id: int, owner: str = ME) -> bool:
    attempt = Attempt(run_id="r", host="web1", command="sweep", lease_owner=owner)
    with leased(run_db, attempt, order_id) as ours:
        return ours


@pytest.mark.parametrize(("seen", "free"), [(None, True), (0, False), (ALIVE_SECONDS + 5, True)])
def test_an_order_lease_is_free_once_its_owner_is_not_seen_alive(seen, free, db, run_db, leased_order):
    if seen is not None:
        process_row(db, "ghost:1:x", seen_seconds_ago=seen)
    assert claim(run_db, leased_order) is free


def test_a_process_takes_back_its_own_lease_unless_one_of_its_threads_has_the_order(db, run_db, leased_order):
    """A lease of this (live) process that a lost connection left behind: another process must not
    take it, this one may, but only while none of its threads is asking about the order."""
    process_row(db, ME)
    with db.transaction() as tx:
        tx.fetch_sql("UPDATE payverify_order_state SET lease_owner = %(me)s RETURNING order_id", {"me": ME})
    assert not claim(run_db, leased_order, owner="web2:7:other")
    attempt = Attempt(run_id="r", host="web1", command="watch", lease_owner=ME)
    with leased(run_db, attempt, leased_order) as first:
        assert first
        with leased(run_db, attempt, leased_order) as second:  # another thread of it
            assert not second
    assert claim(run_db, leased_order)  # no thread has it any more: left behind, taken back


def test_an_outbox_claim_of_a_process_not_seen_alive_is_taken_first(db, run_db):
    for message_id, due_in, claimed_by in (("<due@x>", "-1 minute", None), ("<ghost@x>", "9 minutes", "ghost:1:x"),
                                           ("<alive@x>", "9 minutes", "alive:1:x")):
        with db.transaction() as tx:
            tx.fetch_sql("INSERT INTO payverify_outbox (kind, recipients, context, message_id, next_attempt_at, "
                         "attempts, claimed_by) VALUES ('order_confirmation', ARRAY['a@example.com'], '{}', %(m)s, "
                         "now() + %(due)s::interval, 1, %(by)s) RETURNING id",
                         {"m": message_id, "due": due_in, "by": claimed_by})
    process_row(db, "alive:1:x")
    process_row(db, ME)

    def claim_row() -> str | None:
        with run_db.transaction() as tx:
            row = tx.one("claim_outbox_row", lease_seconds=CLAIM_LEASE_SECONDS, give_up_hours=GIVE_UP_HOURS,
                         fresh_since=None, order_id=None, owner=ME, alive_seconds=ALIVE_SECONDS,
                         left_behind=[])
        return row["message_id"] if row else None

    assert [claim_row(), claim_row(), claim_row()] == ["<ghost@x>", "<due@x>", None]
    assert rows(db, "SELECT message_id, claimed_by FROM payverify_outbox ORDER BY message_id") == [
        {"message_id": "<alive@x>", "claimed_by": "alive:1:x"}, {"message_id": "<due@x>", "claimed_by": ME},
        {"message_id": "<ghost@x>", "claimed_by": ME}]


def test_retention_deletes_the_rows_of_processes_silent_for_a_day(db, run_db):
    process_row(db, "old:1:x", seen_seconds_ago=(SILENT_HOURS + 1) * 3600)
    process_row(db, "recent:1:x", seen_seconds_ago=3600)
    prune(run_db, days=90, dry_run=True)
    assert owners(db) == {"old:1:x", "recent:1:x"}
    prune(run_db, days=90)
    assert owners(db) == {"recent:1:x"}

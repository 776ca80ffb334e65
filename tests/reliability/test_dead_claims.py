"""Nothing waits on a dead process: the outbox rows and order leases held by a `payverify` process that
was killed or stopped are taken by the next run at once (same machine) or within ALIVE_SECONDS (from
another machine, or while the holder is stopped), never when their 600 s or 300 s lapse; and a watch
whose database connections were cut mid-ask is not kept from the order by its own lease.

Every premise is made certain with a fault point (payverify/faults.py): the process kills or stops
itself at a known point; nothing depends on a signal landing in time."""

from __future__ import annotations

import os
import signal
import time

import pytest

from payverify.db.presence import ALIVE_SECONDS
from payverify.mail.kinds import CONFIRMATION
from tests.helpers import log_has, rows, scalar, status_of
from tests.invariants import assert_invariants, check_invariants
from tests.processes import eventually, stop, wait_held

CONFIRMATIONS = 40
OUT_WITHIN = 60.0  # seconds from the restart to the last confirmation: the bound
SLACK = 30.0  # on top of a bound that is a design number, for a loaded 2-core machine


@pytest.fixture
def waiting_mail(seed, db, run_payverify) -> set[int]:
    """CONFIRMATIONS paid orders, settled by a sweep whose SMTP server was down: their confirmations
    wait in the outbox, due now. The ids of the orders."""
    event = seed.event(seed.artist())
    standing = seed.ticket_type(event, "Standing", "12.50")
    orders = {seed.order([(standing, 1)], event_id=event, email=f"fan{i}@example.com").id
              for i in range(CONFIRMATIONS)}
    settled = run_payverify("sweep", extra_env={"PAYVERIFY_SMTP_URL": "smtp://127.0.0.1:1"})
    assert settled.returncode == 0, settled.stderr
    assert scalar(db, "SELECT count(*) FROM payverify_outbox WHERE kind = %(k)s AND status = 'pending' "
                      "AND next_attempt_at <= now()", k=CONFIRMATION) == CONFIRMATIONS
    return orders


def recipients(smtp) -> set[str]:
    return {address for m in smtp.messages for address in m.rcpt_tos}


EVERYONE = {f"fan{i}@example.com" for i in range(CONFIRMATIONS)}


def claimed_rows(db) -> int:
    return scalar(db, "SELECT count(*) FROM payverify_outbox WHERE status = 'pending' "
                      "AND next_attempt_at > now() + interval '5 minutes'")


def test_a_watch_killed_mid_send_then_restarted_sends_every_confirmation_within_a_minute(
        waiting_mail, db, smtp, start_watch):
    """SIGKILL at the 10th message's hand-over to SMTP (one SMTP session, so nothing else is between
    the server's acceptance and the mark): the restarted watch sends all 40 within 60 s, each once."""
    killed = start_watch(PAYVERIFY_FAULT="before_smtp_send@10", PAYVERIFY_SMTP_CONNECTIONS="1")
    killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL
    assert len(smtp.messages) == 9
    assert claimed_rows(db) >= 1  # the premise: rows the dead process had claimed, for 600 s

    watch = start_watch()
    took = eventually(lambda: recipients(smtp) == EVERYONE, within=OUT_WITHIN)
    print(f"every confirmation out {took:.1f} s after the restart")
    code, err = stop(watch, 90)
    assert code == 0, err
    assert "Traceback" not in err
    report = check_invariants(db, smtp, expected_paid=waiting_mail)
    assert_invariants(report)  # none lost, none twice: the kill came before SMTP
    assert scalar(db, "SELECT count(*) FROM payverify_outbox WHERE status <> 'sent'") == 0


def test_a_stopped_sender_loses_its_claims_and_does_not_send_them_again_when_it_resumes(
        waiting_mail, db, env, smtp, payverify_processes, start_watch):
    """A sweep held (SIGSTOP) at the 10th hand-over to SMTP keeps its process and pid, so only its
    silence frees its claims: a watch started beside it sends all 40 within 60 s. Resumed, the sweep
    finds its claim gone and does not send that message a second time."""
    held = payverify_processes.start("sweep", PAYVERIFY_FAULT="before_smtp_send@10:stop",
                                     PAYVERIFY_SMTP_CONNECTIONS="1")
    wait_held(held)
    assert len(smtp.messages) == 9
    assert claimed_rows(db) >= 1

    watch = start_watch()
    took = eventually(lambda: recipients(smtp) == EVERYONE, within=OUT_WITHIN)
    print(f"every confirmation out {took:.1f} s after the watch started")
    held.send_signal(signal.SIGCONT)
    _, err = held.communicate(timeout=120)
    assert held.returncode == 0, err
    code, err = stop(watch, 90)
    assert code == 0, err
    assert log_has(env["PAYVERIFY_LOG_FILE"], "mail.claim_lost")
    # Its rows went for its silence: its pid was there all along, so nothing took it for dead.
    assert not log_has(env["PAYVERIFY_LOG_FILE"], "presence.found_dead")
    report = check_invariants(db, smtp, expected_paid=waiting_mail)
    assert_invariants(report)
    assert scalar(db, "SELECT count(*) FROM payverify_outbox WHERE status <> 'sent'") == 0


@pytest.mark.parametrize("where", ["same machine", "another machine"])
def test_an_order_leased_by_a_killed_sweep_is_settled_by_the_next_run(where, seed, db, run_payverify):
    """A sweep SIGKILLed right after claiming an order's lease (300 s). On the same machine the next
    sweep finds the pid gone and settles the order at once; a process of another machine cannot ask
    the kernel, and the order is settled once the dead one has been silent ALIVE_SECONDS."""
    event = seed.event(seed.artist())
    order = seed.order([(seed.ticket_type(event), 2)], event_id=event)
    killed = run_payverify("sweep", extra_env={"PAYVERIFY_FAULT": "after_claim", "PAYVERIFY_CONCURRENCY": "1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    killed_at = time.monotonic()
    lease = rows(db, "SELECT lease_owner, lease_expires_at > now() + interval '4 minutes' AS held "
                     "FROM payverify_order_state WHERE order_id = %(id)s", id=order.id)[0]
    assert lease["held"]  # the premise: the dead sweep's lease has most of its 300 s to run
    if where == "another machine":  # as if it had run elsewhere: its pid means nothing here
        with db.transaction() as tx:
            tx.fetch_sql("UPDATE payverify_processes SET machine = 'elsewhere/boot/1' WHERE owner = %(o)s "
                         "RETURNING owner", {"o": lease["lease_owner"]})

    sweeps = 0
    while status_of(db, order.id) != "completed":
        assert time.monotonic() - killed_at < ALIVE_SECONDS + SLACK, "the dead sweep's lease kept the order"
        result = run_payverify("sweep")
        assert result.returncode == 0, result.stderr
        sweeps += 1
        time.sleep(1)
    if where == "same machine":
        assert sweeps == 1
    assert scalar(db, "SELECT count(*) FROM tickets_ticket WHERE order_id = %(id)s", id=order.id) == 2


def test_watch_takes_back_its_own_lease_after_its_connections_were_cut_mid_ask(seed, db, env, run_role, start_watch):
    """Watch held just after claiming a paid order's lease; every connection of its role is terminated;
    resumed, its ask fails with the database, and the re-ask a second later takes the lease that watch
    itself still holds in the database (no thread of it has the order): completed within seconds, not
    when the 300 s lease lapses."""
    watch = start_watch(PAYVERIFY_FAULT="after_claim@1:stop")
    # Its first housekeeping pass is over before the order exists, so the ask is what is held.
    eventually(lambda: scalar(db, "SELECT count(*) FROM payverify_runs WHERE command = 'watch' "
                                  "AND finished_at IS NOT NULL") >= 1, within=60)
    event = seed.event(seed.artist())
    order = seed.order([(seed.ticket_type(event), 1)], event_id=event, email="back@example.com")
    wait_held(watch)
    assert rows(db, "SELECT lease_expires_at > now() + interval '4 minutes' AS held FROM payverify_order_state "
                    "WHERE order_id = %(id)s", id=order.id)[0]["held"]
    cut = scalar(db, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                     "WHERE datname = current_database() AND usename = %(role)s", role=run_role.name)
    assert cut >= 2  # the held ask's connection, the listener, the mail workers', the presence's
    resumed = time.monotonic()
    os.kill(watch.pid, signal.SIGCONT)
    took = eventually(lambda: status_of(db, order.id) == "completed", within=SLACK)
    print(f"completed {took:.1f} s after the watch resumed")
    assert time.monotonic() - resumed < SLACK
    assert watch.poll() is None
    code, err = stop(watch, 90)
    assert code == 0, err
    assert "Traceback" not in err
    assert scalar(db, "SELECT count(*) FROM tickets_ticket WHERE order_id = %(id)s", id=order.id) == 1


def test_watch_takes_back_a_message_it_was_sending_when_its_connections_were_cut(seed, db, run_role, smtp, start_watch):
    """Watch held just before handing a confirmation to SMTP; every connection of its role is terminated;
    resumed, it cannot confirm its claim and the row is left claimed by a live process. Its next claim,
    once reconnected, takes the row back: sent once and marked within seconds, not after the 600 s
    claim lapses."""
    event = seed.event(seed.artist())
    order = seed.order([(seed.ticket_type(event), 1)], event_id=event, email="later@example.com")
    watch = start_watch(PAYVERIFY_FAULT="before_smtp_send@1:stop", PAYVERIFY_SMTP_CONNECTIONS="1")
    wait_held(watch)
    assert status_of(db, order.id) == "completed" and smtp.messages == []
    cut = scalar(db, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                     "WHERE datname = current_database() AND usename = %(role)s", role=run_role.name)
    assert cut >= 2
    os.kill(watch.pid, signal.SIGCONT)
    took = eventually(lambda: scalar(db, "SELECT status FROM payverify_outbox WHERE order_id = %(id)s "
                                         "AND kind = %(k)s", id=order.id, k=CONFIRMATION) == "sent", within=SLACK)
    print(f"sent and marked {took:.1f} s after the watch resumed")
    assert [m.rcpt_tos for m in smtp.messages] == [("later@example.com",)]
    code, err = stop(watch, 90)
    assert code == 0, err
    assert "Traceback" not in err

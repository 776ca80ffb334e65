"""`payverify check ORDER` while another run is asking about the same order: check takes the order's
lease like any sweep or watch (one attempt path), so two processes never ask about one order at once.

The other run is a real sweep held at its fault point with the lease in hand (`after_claim:hang`: the
asking thread blocks, the process goes on beating in payverify_processes, so its lease stays live
for as long as the test wants). No timing luck: the test acts on lines the processes write.
"""

from __future__ import annotations

import signal

from payverify.exitcodes import ExitStatus
from tests.helpers import log_has, rows, status_of
from tests.processes import eventually


def held_sweep(payverify_processes, env):
    """A sweep that took an order's lease and hangs before asking SumUp."""
    sweep = payverify_processes.start("sweep", PAYVERIFY_FAULT="after_claim:hang", PAYVERIFY_CONCURRENCY="1")
    eventually(lambda: log_has(env["PAYVERIFY_LOG_FILE"], "fault.hang"), 60, "the sweep holding the lease")
    return sweep


def test_check_leaves_an_order_another_run_is_asking_about(shop, seed, db, sumup, env, payverify_processes,
                                                            run_payverify):
    """A live sweep holds the order: check says it waits, then after 10 s that it gives up, exit 7,
    having asked SumUp nothing and changed nothing. Once that sweep is gone, check settles the order."""
    event, ticket_type = shop
    order = seed.order([(ticket_type, 1)], event_id=event)
    sweep = held_sweep(payverify_processes, env)

    result = run_payverify("check", order.order_number)
    assert result.returncode == ExitStatus.SUMUP_UNAVAILABLE, (result.stdout, result.stderr)
    assert result.stderr.strip().splitlines() == [
        f"payverify: order {order.order_number} is being verified by another run; waiting for it (at most 10 s)",
        f"payverify: order {order.order_number} is being verified by another run right now; "
        "run `payverify check` again in a minute"]
    assert "Traceback" not in result.stdout
    assert sumup.get_count(order.checkout_id) == 0
    assert status_of(db, order.id) == "pending_verification"
    assert rows(db, "SELECT outcome FROM payverify_audit WHERE order_id = %(id)s", id=order.id) == []

    sweep.send_signal(signal.SIGKILL)  # a dead process's lease on this machine is free at once
    sweep.wait(timeout=30)
    again = run_payverify("check", order.order_number)
    assert again.returncode == ExitStatus.OK, (again.stdout, again.stderr)
    assert status_of(db, order.id) == "completed"
    assert sumup.get_count(order.checkout_id) == 1


def test_check_waits_for_the_other_run_and_then_verifies(shop, seed, db, sumup, env, payverify_processes):
    """check starts while the sweep holds the order and says it is waiting; the sweep dies; check
    takes the order then and settles it, exit 0. While it waits, check asks the kernel about the holder
    at every try (not only at its presence's 5 s beat), so the dead sweep's claim is free at its next try."""
    event, ticket_type = shop
    order = seed.order([(ticket_type, 1)], event_id=event)
    sweep = held_sweep(payverify_processes, env)

    check = payverify_processes.start("check", order.order_number)
    waiting = check.stderr.readline()  # written before it waits: the sweep is still held then
    assert waiting.strip() == (f"payverify: order {order.order_number} is being verified by another run; "
                               "waiting for it (at most 10 s)"), waiting
    sweep.send_signal(signal.SIGKILL)
    sweep.wait(timeout=30)
    out, err = check.communicate(timeout=60)
    assert check.returncode == ExitStatus.OK, (out, err)
    assert "Decision: completed" in out, out
    assert status_of(db, order.id) == "completed"
    assert sumup.get_count(order.checkout_id) == 1

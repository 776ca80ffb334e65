"""Property-based (hypothesis): the settle step under random interleavings of concurrent verifies of
one paid order: exactly one completion, exactly its tickets."""

from __future__ import annotations

import threading
import time

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from payverify.db import Database
from payverify.orders.settle import Attempt
from payverify.orders.verify import Verifier
from payverify.secret import Secret
from payverify.sumup.client import SumUpClient
from tests.helpers import scalar


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sleeps=st.lists(st.tuples(st.floats(min_value=0, max_value=0.01), st.floats(min_value=0, max_value=0.03)),
                       min_size=2, max_size=5),
       quantity=st.integers(min_value=1, max_value=4))
def test_concurrent_verifies_settle_once(sleeps, quantity, settings, seed, db, sumup, database_url):
    """N verifies of one paid order at once, with random delays before asking and after SumUp answered:
    exactly one completion, tickets == admissions, one fulfilment row, one confirmation in the outbox."""
    artist = seed.artist()
    event = seed.event(artist)
    order = seed.order([(seed.ticket_type(event), quantity)], event_id=event)
    start = threading.Barrier(len(sleeps))
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def run(index: int, before: float, after: float) -> None:
        worker_db = Database.connect(Secret(database_url))
        client = SumUpClient(sumup.url)
        try:
            verifier = Verifier(settings, worker_db, client,
                                Attempt(run_id=f"prop{index}", host="h", command="sweep", lease_owner=f"h:{index}"))
            original_ask = verifier.ask

            def ask_then_sleep(o):
                answer = original_ask(o)
                time.sleep(after)
                return answer

            verifier.ask = ask_then_sleep
            start.wait(timeout=10)
            time.sleep(before)
            outcomes.append(verifier.verify(order.id).outcome)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            client.close()
            worker_db.close()

    threads = [threading.Thread(target=run, args=(i, b, a)) for i, (b, a) in enumerate(sleeps)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert len(outcomes) == len(sleeps)
    # The others either lost the guarded UPDATE (superseded) or loaded the order already completed.
    assert outcomes.count("completed") == 1, outcomes
    assert set(outcomes) <= {"completed", "superseded", "unchanged"}, outcomes
    assert scalar(db, f"SELECT status FROM orders_order WHERE id = {order.id}") == "completed"
    assert scalar(db, f"SELECT count(*) FROM tickets_ticket WHERE order_id = {order.id}") == order.admissions
    assert scalar(db, f"SELECT count(*) FROM payverify_fulfilment WHERE order_id = {order.id}") == 1
    assert scalar(db, f"SELECT count(*) FROM payverify_outbox WHERE order_id = {order.id} "
                      "AND kind = 'order_confirmation'") == 1

"""One reconciliation as cron starts it (`payverify reconcile`): the accounts read and judged
(modes/reconcile.py and the modules it names), the alerts they queued delivered, the run recorded (modes/recorded.py).

A dry run records nothing and sends nothing. The metrics file it rewrites shows the sweeps' runs, as
after a sweep (a reconciliation adds its discrepancies and its last successful run); it pings no
heartbeat, which is the sweeps' and watch's.
"""

from __future__ import annotations

from datetime import datetime

from payverify.exitcodes import ExitStatus
from payverify.mail.sender import deliver
from payverify.modes.reconcile import Reconciliation, reconcile
from payverify.modes.reconcile_account import RowSink
from payverify.modes.recorded import Bookkeeping, recorded_run
from payverify.modes.runtime import Runtime


def reconcile_run(rt: Runtime, *, since: datetime | None = None, dry_run: bool = False,
                  row_sink: RowSink | None = None) -> tuple[Reconciliation, ExitStatus]:
    """The reconciliation and its exit status: 0 when every account was read, 7 when one was not."""
    books = Bookkeeping(host=rt.host, command="reconcile", heartbeat_url=None, metrics_file=rt.settings.metrics_file,
                        record=not dry_run)
    with recorded_run(rt.database, rt.run_id, books) as run:
        client = rt.sumup_client()
        try:
            result = reconcile(rt.settings, run.db, client, rt.run_id, since=since, dry_run=dry_run, row_sink=row_sink)
        finally:
            client.close()
        status = ExitStatus.OK if result.all_read else ExitStatus.SUMUP_UNAVAILABLE
        if not dry_run:
            with rt.presence("reconcile"):  # its outbox claims die with it
                deliver(rt.settings, run.db, owner=rt.lease_owner)
        run.end(status)
    return result, status

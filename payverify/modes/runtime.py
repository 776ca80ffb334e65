"""What every command needs: settings, logging, the database (checked), the SumUp client."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass

from payverify.config import Settings, load_settings, require_database_url


@dataclass
class Runtime:
    settings: Settings
    run_id: str
    host: str

    @property
    def lease_owner(self) -> str:
        return f"{self.host}:{os.getpid()}:{self.run_id}"

    def attempt(self, command: str):
        from payverify.orders.settle import Attempt

        return Attempt(run_id=self.run_id, host=self.host, command=command, lease_owner=self.lease_owner)

    def database(self, *, check_schema: bool = True, read_only: bool = False):
        """Connect and check the contract: site tables as expected, payverify's schema current.
        `read_only` commands (pending) need not be able to fill every NOT NULL ticket column."""
        from payverify.db.contract import require_site_tables
        from payverify.db.migrate import require_current

        db = connect_database(self.settings)
        if check_schema:
            try:
                with db.transaction() as tx:
                    require_site_tables(tx, issuing=not read_only)
                    require_current(tx)
            except BaseException:
                db.close()
                raise
        return db

    def presence(self, command: str):
        """`with rt.presence(command)`: this process is seen alive (payverify_processes) for the block,
        so the claims it makes are free to other runs at once if it dies (db/presence.py)."""
        from payverify.db.presence import Presence

        return Presence(lambda: connect_database(self.settings), owner=self.lease_owner, host=self.host,
                        command=command)

    def sumup_client(self, limiter=None):
        return sumup_client(self.settings, limiter=limiter)


def connect_database(settings: Settings, **options):
    """A connection as every command makes it; `options` go to Database.connect (doctor: a short
    connect timeout, its own application_name)."""
    from payverify.db import Database

    return Database.connect(require_database_url(settings), statement_timeout_ms=settings.db_statement_timeout_ms,
                            lock_timeout_ms=settings.db_lock_timeout_ms, site_schema=settings.site_schema,
                            **options)


def sumup_client(settings: Settings, **options):
    """The SumUp client as every command makes it; `options` go to SumUpClient (a limiter, fewer attempts)."""
    from payverify.sumup.client import SumUpClient

    return SumUpClient(settings.sumup_api_base_url, connect_timeout=settings.sumup_connect_timeout,
                       read_timeout=settings.sumup_read_timeout, **options)


def start(config_file: str | None) -> Runtime:
    from payverify import logconfig

    settings = load_settings(config_file=config_file)
    logconfig.configure(settings.log_file, settings.log_level, settings.secrets())
    return Runtime(settings=settings, run_id=uuid.uuid4().hex[:12], host=socket.gethostname())

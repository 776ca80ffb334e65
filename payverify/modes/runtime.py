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
        from payverify.db import Database
        from payverify.db.contract import require_site_tables
        from payverify.db.migrate import require_current

        db = Database.connect(require_database_url(self.settings),
                              statement_timeout_ms=self.settings.db_statement_timeout_ms,
                              lock_timeout_ms=self.settings.db_lock_timeout_ms,
                              site_schema=self.settings.site_schema)
        if check_schema:
            try:
                with db.transaction() as tx:
                    require_site_tables(tx, issuing=not read_only)
                    require_current(tx)
            except BaseException:
                db.close()
                raise
        return db

    def sumup_client(self, limiter=None):
        from payverify.sumup.client import SumUpClient

        s = self.settings
        return SumUpClient(s.sumup_api_base_url, connect_timeout=s.sumup_connect_timeout,
                           read_timeout=s.sumup_read_timeout, limiter=limiter)


def start(config_file: str | None) -> Runtime:
    from payverify import logconfig

    settings = load_settings(config_file=config_file)
    logconfig.configure(settings.log_file, settings.log_level, settings.secrets())
    return Runtime(settings=settings, run_id=uuid.uuid4().hex[:12], host=socket.gethostname())

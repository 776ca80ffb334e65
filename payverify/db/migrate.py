"""payverify's own schema: versioned SQL files applied in order under an advisory lock.

`db upgrade` is idempotent and safe when several hosts run it at once: the first takes the lock and
applies what is missing, the others wait, then find nothing to do. It never touches the site's tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from payverify.db.connection import Database, Tx
from payverify.errors import PermissionDenied, SchemaMismatch

_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    found = []
    for entry in resources.files("payverify.db").joinpath("migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    return found


def latest_version() -> int:
    return migrations()[-1].version


def current_version(tx: Tx) -> int:
    if not tx.require_one("schema_version_table_exists")["present"]:
        return 0
    return tx.require_one("schema_version")["version"]


def upgrade(db: Database) -> list[Migration]:
    """Apply every migration newer than the database's version; return those applied.

    Creating and altering payverify's tables needs their owner (or, the first time, the right to
    create in the schema): the run-time role of `db grants` is refused with a line saying so, unless
    there is nothing to do."""
    with db.transaction() as tx:
        tx.run("take_migration_lock")
        if db.own_schema is not None:
            tx.only_schema(db.own_schema)  # never in PAYVERIFY_SITE_SCHEMA: that schema is the site's
        try:
            pending = [m for m in migrations() if m.version > current_version(tx)]
            if not pending:
                return []
            tx.run("create_schema_version_table")
            for migration in pending:
                tx.script(migration.sql)
                tx.run("record_migration", version=migration.version, name=migration.name)
        except PermissionDenied as exc:
            raise PermissionDenied(
                f"payverify db upgrade creates and alters payverify's tables, which needs the rights of their "
                f"owner, and the database refused: {exc.refused}. Run it as that user (the site's migration "
                "user, say); the run-time role of `payverify db grants` cannot", refused=exc.refused) from None
    return pending


def require_current(tx: Tx) -> None:
    version = current_version(tx)
    latest = latest_version()
    if version < latest:
        raise SchemaMismatch(
            f"payverify's tables are at version {version}, this payverify needs {latest}: "
            "run `payverify db upgrade`")
    if version > latest:
        raise SchemaMismatch(
            f"payverify's tables are at version {version}, newer than this payverify knows ({latest}): "
            "upgrade payverify")

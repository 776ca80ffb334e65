"""Building the site's tables with Django's own migrations, and the ORM in the test process.

Django reads its settings once per process, so `makemigrations` and `migrate` run in a
subprocess per id flavour, with the migrations written to a throwaway package (they are generated
every session, never committed). The test process configures Django once and points its one
connection at each test's database in turn.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from tests.django_site.settings import APPS, database, settings_for

ROOT = Path(__file__).resolve().parents[2]
FLAVOURS = ("BigAutoField", "AutoField")


def migrate(database_url: str, auto_field: str, workdir: Path) -> None:
    """Generate the site's migrations for `auto_field` ids and apply them to `database_url`."""
    package = f"site_migrations_{auto_field.lower()}"
    # makemigrations creates the per-app packages itself, below an importable top-level one.
    (workdir / package).mkdir(parents=True)
    (workdir / package / "__init__.py").touch()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(workdir)]),
           "DJANGO_SITE_DATABASE_URL": database_url, "DJANGO_SITE_AUTO_FIELD": auto_field,
           "DJANGO_SITE_MIGRATIONS": package}
    for command in (["makemigrations", *APPS], ["migrate"]):
        done = subprocess.run([sys.executable, "-m", "django", *command, "--settings=tests.django_site.settings"],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"django-admin {command[0]} failed:\n{done.stdout}{done.stderr}")


def configure_orm() -> None:
    """Set Django up in this process (once). The model classes serve both flavours: an id is an int
    in Python either way, so only the tables differ, never the queries. Until orm_database() points
    it at a test's database, the connection names one that does not exist."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(**settings_for("postgresql:///no_database_outside_a_test"))
        django.setup()


@contextlib.contextmanager
def orm_database(url: str):
    """Point the ORM's default connection at `url` for the duration; never leave it open."""
    from django.db import connections

    connection = connections["default"]
    connection.close()
    connection.settings_dict.update(database(url))
    try:
        yield
    finally:
        connection.close()

"""Settings of the test site, from the environment (Django reads settings once per process).

DJANGO_SITE_DATABASE_URL   libpq URL of the database to migrate or use
DJANGO_SITE_AUTO_FIELD     BigAutoField (Django >= 3.2 projects) or AutoField (older projects)
DJANGO_SITE_MIGRATIONS     importable package that holds (or will hold) the generated migrations
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs, unquote, urlsplit

APPS = ("artists", "events", "orders", "tickets")


def database(url: str) -> dict:
    """Django's DATABASES entry for a libpq URL (host may be a socket directory in ?host=)."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")) or "postgres",
        "USER": unquote(parts.username or "") or query.get("user", ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": query.get("host") or parts.hostname or "",
        "PORT": str(parts.port or query.get("port", "")),
    }


def settings_for(database_url: str, auto_field: str = "BigAutoField", migrations: str | None = None) -> dict:
    """The whole settings of the test site as a dict (for settings.configure() in the test process)."""
    found = {
        "INSTALLED_APPS": [f"tests.django_site.{app}" for app in APPS],
        "DATABASES": {"default": database(database_url)},
        "DEFAULT_AUTO_FIELD": f"django.db.models.{auto_field}",
        "USE_TZ": True,
        "TIME_ZONE": "Europe/Jersey",
        "SECRET_KEY": "test-site-only",
    }
    if migrations:
        found["MIGRATION_MODULES"] = {app: f"{migrations}.{app}" for app in APPS}
    return found


globals().update(settings_for(os.environ.get("DJANGO_SITE_DATABASE_URL", "postgresql:///postgres"),
                              os.environ.get("DJANGO_SITE_AUTO_FIELD", "BigAutoField"),
                              os.environ.get("DJANGO_SITE_MIGRATIONS")))

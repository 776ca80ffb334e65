"""Outbox row -> mail: a one-line subject, a plain-text part and an HTML part with its CSS inlined.

Templates live in templates/emails/ (PAYVERIFY_TEMPLATES_DIR overrides). HTML templates are
autoescaped, text templates are not (they are never parsed as markup). Every value a template shows
goes through printable() first, in subjects, text and HTML alike: a customer's name or a SumUp string
cannot add a line to an alert or carry an escape sequence to the terminal that reads it. A missing
context key raises (StrictUndefined): a mail with a silent hole in it is worse than one that is
retried and alerted.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import lru_cache, partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, select_autoescape
from markupsafe import Markup

import payverify
from payverify.addresses import one_line
from payverify.config import Settings
from payverify.errors import ConfigError
from payverify.mail.kinds import MAIL_TYPES, REGISTRY
from payverify.money import format_amount
from payverify.printable import printable

SUBJECT_MAX = 200


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def templates_dir(settings: Settings) -> Path:
    """PAYVERIFY_TEMPLATES_DIR; else the source tree's templates/emails; else where the wheel put them."""
    if settings.templates_dir:
        path = Path(settings.templates_dir)
        if not path.is_dir():
            raise ConfigError(f"PAYVERIFY_TEMPLATES_DIR: {path} is not a directory")
        return path
    for path in (Path(payverify.__file__).resolve().parent.parent / "templates" / "emails",
                 Path(sys.prefix) / "share" / "payverify" / "templates" / "emails"):
        if path.is_dir():
            return path
    raise ConfigError("mail templates not found: set PAYVERIFY_TEMPLATES_DIR to the templates/emails directory")


def clean_subject(subject: str) -> str:
    return one_line(subject, SUBJECT_MAX)


def _local(value: str | datetime, zone: ZoneInfo) -> str:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        # The database hands out timestamptz; a naive time here would be guessed wrong on a ticket.
        raise ValueError(f"not a timezone-aware time: {value!r}")
    local = moment.astimezone(zone)
    return f"{local:%A} {local.day} {local:%B %Y}, {local:%H:%M} ({local:%Z})"


def _money(amount: str | Decimal | int, currency: str) -> str:
    return format_amount(Decimal(str(amount)), currency)


def _dash(value: Any) -> Any:
    """A field SumUp (or the database) left empty shows as a dash, not as "None"."""
    return "—" if value is None or value == "" else value


def _shown(value: Any) -> Any:
    """What a `{{ ... }}` shows: text one line with its control characters escaped visibly. Markup is
    HTML the templates made themselves (already escaped) and is left alone."""
    return printable(value) if isinstance(value, str) and not isinstance(value, Markup) else value


def _line_total(item: dict[str, Any]) -> Decimal:
    return Decimal(str(item["unit_price"])) * int(item["quantity"])


def admin_order_url(site_url: str | None, order_id: int | None) -> str | None:
    """The order's page in the site's Django admin, or None when the site or the order is unknown."""
    if not site_url or order_id is None:
        return None
    return f"{site_url.rstrip('/')}/admin/orders/order/{int(order_id)}/change/"


@dataclass(frozen=True)
class _Templates:
    env: Environment
    inliner: css_inline.CSSInliner
    compiled_subjects: dict[str, Template] = field(default_factory=dict)

    def subject(self, kind: str) -> Template:
        """The kind's one-line subject template, compiled on first use (compiling costs more than rendering)."""
        if kind not in self.compiled_subjects:
            self.compiled_subjects[kind] = self.env.from_string(REGISTRY[kind].subject)
        return self.compiled_subjects[kind]


@lru_cache(maxsize=8)
def _templates(directory: Path, timezone: str, site_url: str | None) -> _Templates:
    """The Jinja environment, its compiled templates and the CSS inliner: made once per process for a
    templates directory (and what the filters and globals close over), not once per message."""
    zone = ZoneInfo(timezone)
    # default_for_string=False: subjects are header text, not HTML, and must not be entity-escaped.
    env = Environment(loader=FileSystemLoader(str(directory)),
                      autoescape=select_autoescape(["html"], default_for_string=False),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      keep_trailing_newline=True, finalize=_shown)
    env.filters["local"] = lambda value: _local(value, zone)
    env.filters["money"] = _money
    env.filters["line_total"] = _line_total
    env.filters["dash"] = _dash
    env.globals["admin_url"] = partial(admin_order_url, site_url)
    css = (directory / "style.css").read_text(encoding="utf-8")
    # Mail clients ignore <style> and <link> unevenly: everything goes into style="" attributes,
    # nothing is fetched from the network, and the <style> blocks are dropped once applied.
    inliner = css_inline.CSSInliner(extra_css=css, keep_style_tags=False, keep_link_tags=False,
                                    load_remote_stylesheets=False)
    return _Templates(env=env, inliner=inliner)


class Renderer:
    def __init__(self, settings: Settings, directory: Path | None = None) -> None:
        self.settings = settings
        self.directory = Path(directory) if directory is not None else templates_dir(settings)
        self._templates = _templates(self.directory.resolve(), settings.timezone, settings.site_url)
        self.env = self._templates.env
        self.inliner = self._templates.inliner

    def admin_order_url(self, order_id: int | None) -> str | None:
        """The order's page in the site's Django admin, or None when the site or the order is unknown."""
        return admin_order_url(self.settings.site_url, order_id)

    def render(self, kind: str, context: dict[str, Any], *, tickets: list[dict] | None = None) -> Rendered:
        if kind not in MAIL_TYPES:
            raise ValueError(f"no mail template for kind {kind!r}")
        full = {
            **context,
            "site_name": self.settings.display_site_name,
            "site_url": self.settings.site_url.rstrip("/") if self.settings.site_url else None,
            "admin_order_url": self.admin_order_url(context.get("order_id")),
            "tickets": [{"code": t["code"], "ticket_type": t["ticket_type"], "holder_name": t["holder_name"]}
                        for t in tickets or []],
            "alert_email": self.settings.alert_email,
            "kind": kind,
        }
        subject = clean_subject(self._templates.subject(kind).render(full))
        text = self.env.get_template(f"{kind}.txt").render(full)
        html = self.inliner.inline(self.env.get_template(f"{kind}.html").render(full))
        return Rendered(subject=subject, text=text, html=html)

"""E-mail addresses and header text from untrusted data, checked before they reach a header.

Light on purpose (stdlib only): configuration uses it at start-up.
"""

from __future__ import annotations

import re
from email.headerregistry import Address
from email.utils import parseaddr

# C0 controls, DEL, C1 controls and the Unicode line/paragraph separators: none may reach a header.
CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str, limit: int = 200) -> str:
    """Header-safe: control characters become spaces, runs of whitespace one space, capped."""
    line = " ".join(CONTROL_CHARS.sub(" ", text).split())
    return line if len(line) <= limit else line[:limit - 1].rstrip() + "…"


class BadAddress(ValueError):
    """An address that cannot be used in a header (the row can never be sent)."""


def address(addr_spec: str, display_name: str = "") -> Address:
    """An Address from untrusted text; BadAddress if it is not exactly one plain address.
    An internationalised domain is converted to its ASCII (IDNA) form, which every relay carries."""
    addr_spec = addr_spec.strip()
    if CONTROL_CHARS.search(addr_spec) or addr_spec.count("@") != 1 or any(c in addr_spec for c in '<>,;" '):
        raise BadAddress("not a single plain e-mail address")
    local, domain = addr_spec.split("@")
    if not local or not domain:
        raise BadAddress("not a single plain e-mail address")
    try:
        domain = domain.encode("idna").decode("ascii")
        return Address(display_name=one_line(display_name, 100), username=local, domain=domain)
    except (ValueError, IndexError, UnicodeError) as exc:
        raise BadAddress(f"not a valid e-mail address ({type(exc).__name__})") from None


def sender_address(mail_from: str, site_name: str) -> Address:
    """PAYVERIFY_MAIL_FROM as `addr` or `Name <addr>`; the site's name is the default display name."""
    name, addr = parseaddr(mail_from)
    return address(addr, name or site_name)



"""Whether a configured host is this machine: where a connection in clear text reaches nobody else.

Judged from the host as written (a name is not resolved): `localhost`, an address in 127.0.0.0/8 or
::1, or a Unix socket directory for Postgres. Anything else, an alias of this machine included, is
treated as another machine: stricter, never looser.
"""

from __future__ import annotations

import ipaddress


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def is_unix_socket(host: str | None) -> bool:
    """A libpq host that is a socket directory (or Linux's abstract namespace)."""
    return host is not None and host.startswith(("/", "@"))

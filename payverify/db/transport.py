"""How the database connection travels: encrypted or not, the server verified or not, and whether
it leaves this machine at all (doctor's "database transport" line).

libpq's default is sslmode=prefer: TLS if the server offers it, silently plain text otherwise, and
never a certificate check, while artists' OAuth tokens and customers' data cross the connection.
Only sslmode=verify-full (with sslrootcert naming the server's CA) both encrypts and makes sure the
server is the one named. A Unix socket or a loopback host never leaves the machine.
"""

from __future__ import annotations

from dataclasses import dataclass

from payverify.db.connection import Database
from payverify.hosts import is_loopback, is_unix_socket


@dataclass(frozen=True)
class Transport:
    host: str  # as connected: a name, an address or a socket directory
    socket: bool  # a Unix socket
    local: bool  # a Unix socket or a loopback host: the connection never leaves this machine
    sslmode: str
    encrypted: bool  # this client's own connection, as libpq has it (behind a pooler: to the pooler)
    protocol: str | None  # TLSv1.3...

    @property
    def verified(self) -> bool:
        """Encrypted, and the server proved it is the host named (its certificate and name checked)."""
        return self.encrypted and self.sslmode == "verify-full"


def transport(db: Database) -> Transport:
    params = db.connection_parameters()
    host = params.get("host", "")
    # With hostaddr the connection goes to those addresses (host is then only the certificate's name).
    reached = [h.strip() for h in params["hostaddr"].split(",")] if params.get("hostaddr") else [host]
    socket = all(is_unix_socket(h) for h in reached)
    encrypted, protocol = db.encryption()
    return Transport(host=host, socket=socket, local=all(is_unix_socket(h) or is_loopback(h) for h in reached),
                     sslmode=params.get("sslmode", "prefer"), encrypted=encrypted, protocol=protocol)

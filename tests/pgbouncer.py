"""A real PgBouncer in transaction pooling in front of the test server, for the tests that run payverify
through it (the pooler most Django sites put before Postgres).

Its pgbouncer.ini is a stock one: only what points it at the test server and keeps it to itself (own
port, own socket, log and pid files in its own directory), `pool_mode = transaction`, and
`auth_type = trust` with an auth_file naming the suite's roles (the test server trusts local
connections; the roles are made per test process). Everything else is PgBouncer's default: in
particular no `ignore_startup_parameters`, so a client sending startup options is refused as a user
would see it. Debian's package comes from `.ci/run`; a system service it may start (port 6432) is not
used.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2

REQUIRE = "PAYVERIFY_REQUIRE_PGBOUNCER"
NOT_INSTALLED = "pgbouncer not installed: the tests through PgBouncer did not run; CI runs them"
# Debian installs it in /usr/sbin, which is not on every user's PATH.
_PLACES = ("/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer", "/usr/local/bin/pgbouncer")


def binary() -> str | None:
    found = shutil.which("pgbouncer")
    return found or next((p for p in _PLACES if os.access(p, os.X_OK)), None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PgBouncer:
    """A running pgbouncer; `url(u)` is `u` (any user, any database) through it."""

    def __init__(self, port: int, directory: Path) -> None:
        self.port = port
        self.directory = directory

    def url(self, url: str) -> str:
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.directory / "pgbouncer.log").read_text(errors="replace")
        return ""


def _ini(directory: Path, port: int, server: str) -> str:
    parts = urlsplit(server)
    return "\n".join([
        "[databases]",
        f"* = host={parts.hostname or '127.0.0.1'} port={parts.port or 5432}",
        "",
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        f"unix_socket_dir = {directory}",
        f"logfile = {directory / 'pgbouncer.log'}",
        f"pidfile = {directory / 'pgbouncer.pid'}",
        "auth_type = trust",
        f"auth_file = {directory / 'userlist.txt'}",
        "pool_mode = transaction",
        "",
    ])


def _userlist(server: str, roles: dict[str, str]) -> str:
    """Each role with its password (used for the server login, should the server ask for one)."""
    owner = urlsplit(server)
    every = {owner.username or "postgres": owner.password or "", **roles}
    return "".join(f'"{name}" "{password}"\n' for name, password in every.items())


def _accepts(pgbouncer: PgBouncer, server: str) -> bool:
    try:
        conn = psycopg2.connect(pgbouncer.url(server), connect_timeout=2)
    except psycopg2.OperationalError:
        return False
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        return True
    finally:
        conn.close()


def _start(program: str, run_as: list[str], directory: Path, server: str, within: float
           ) -> tuple[subprocess.Popen, PgBouncer]:
    """pgbouncer on a free port, once it answers. Its stderr goes to a file: a pipe nobody reads would
    fill with its log and block it."""
    attempts = 3  # another process may take the free port before pgbouncer binds it
    for attempt in range(1, attempts + 1):
        pgbouncer = PgBouncer(_free_port(), directory)
        (directory / "pgbouncer.ini").write_text(_ini(directory, pgbouncer.port, server))
        os.chmod(directory / "pgbouncer.ini", 0o644)
        with open(directory / "stderr.txt", "w") as stderr:
            proc = subprocess.Popen([program, *run_as, str(directory / "pgbouncer.ini")],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + within
        # Without its TCP port pgbouncer carries on (on its Unix socket alone): its log says so.
        while proc.poll() is None and "cannot listen on 127.0.0.1" not in pgbouncer.log():
            if _accepts(pgbouncer, server):
                return proc, pgbouncer
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        said = (directory / "stderr.txt").read_text(errors="replace") + pgbouncer.log()
        if "Address already in use" not in said or attempt == attempts:
            raise AssertionError(f"pgbouncer did not start on 127.0.0.1:{pgbouncer.port}: {said}")
        (directory / "pgbouncer.log").unlink(missing_ok=True)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def running(server: str, roles: dict[str, str], within: float = 30.0) -> Iterator[PgBouncer]:
    """A pgbouncer in front of `server` (a maintenance URL), for the owner and `roles` (name: password),
    accepting connections; stopped and its directory removed at the end."""
    program = binary()
    assert program, NOT_INSTALLED
    directory = Path(tempfile.mkdtemp(prefix="pv-pgbouncer-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        # pgbouncer refuses to run as root; it drops to this user, which must reach its directory.
        user = pwd.getpwnam("postgres")
        os.chown(directory, user.pw_uid, user.pw_gid)
        run_as = ["-u", user.pw_name]
    (directory / "userlist.txt").write_text(_userlist(server, roles))
    os.chmod(directory / "userlist.txt", 0o644)
    proc = None
    try:
        proc, pgbouncer = _start(program, run_as, directory, server, within)
        yield pgbouncer
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # immediate shutdown
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        shutil.rmtree(directory, ignore_errors=True)

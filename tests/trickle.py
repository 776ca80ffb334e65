"""A real server that sends its whole reply, status line and headers included, one byte at a time:
what a slow proxy or a stuck upstream does to a client whose timeouts bound each read only."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time

REPLY = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class TricklingServer:
    """Accepts connections on 127.0.0.1 and answers each request with `reply`, a byte every `interval`
    seconds; `served` counts the requests that got their first byte. Over TLS with `tls`."""

    def __init__(self, interval: float, reply: bytes = REPLY, tls: ssl.SSLContext | None = None) -> None:
        self.interval, self.reply, self.tls = interval, reply, tls
        self.served = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self._sock.getsockname()[1]}"

    def __enter__(self) -> TricklingServer:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ssl.SSLError), conn:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            conn.settimeout(10)
            request = b""
            while b"\r\n\r\n" not in request:  # the request's head; a body (a ping's) is not waited for
                chunk = conn.recv(65536)
                if not chunk:
                    return
                request += chunk
            with self._lock:
                self.served += 1
            for i in range(len(self.reply)):
                conn.sendall(self.reply[i:i + 1])
                if self._stop.wait(self.interval):
                    return
            time.sleep(0.1)

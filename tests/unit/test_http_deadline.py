"""The wall-clock deadline of one HTTP request (payverify/http_deadline.py), against real local sockets."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

from payverify import http_deadline
from tests.trickle import TricklingServer


class KeepAlive(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: ClassVar[set[int]] = set()

    def do_GET(self):
        KeepAlive.connections.add(self.client_address[1])  # the client port: one per connection
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def test_a_request_done_in_time_leaves_its_kept_alive_connection_alone():
    """The deadline of a finished request passes later without touching the pooled socket: the next
    request reuses the same connection."""
    KeepAlive.connections = set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), KeepAlive)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with http_deadline.session() as session:
            with http_deadline.within(0.2) as first:
                assert session.get(url, timeout=(1, 1)).text == "ok"
            time.sleep(0.5)  # the first deadline passes while the connection sits in the pool
            with http_deadline.within(2):
                assert session.get(url, timeout=(1, 1)).text == "ok"
    finally:
        server.shutdown()
        server.server_close()
    assert not first.expired
    assert len(KeepAlive.connections) == 1


def test_a_trickle_is_cut_at_the_deadline_and_marked_expired():
    """Each byte within the read timeout, the reply never done in time: the request fails at the deadline."""
    with TricklingServer(0.1) as server, http_deadline.session() as session:
        started = time.monotonic()
        with http_deadline.within(0.5) as deadline:
            try:
                session.get(server.url, timeout=(1, 1)).raise_for_status()
                failed = False
            except Exception:  # noqa: BLE001 - which exception depends on where the reply was cut
                failed = True
        elapsed = time.monotonic() - started
    assert deadline.expired and failed
    assert elapsed < 1.5

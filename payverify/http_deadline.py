"""A wall-clock deadline for one HTTP request made with requests: connect, send and the whole reply.

requests' timeouts bound each socket operation, not the request: a server (or a proxy) that sends its
status line, headers or body a byte every few seconds holds a request for ever, and neither requests
nor urllib3 offers a total timeout (urllib3 says so in its Timeout documentation). So: a session from
`session()` has connections that tell the request running in their thread (`within(seconds)`) which
sockets it uses, and one watchdog thread shuts those sockets down when the deadline passes. The blocked
read then returns at once, also under TLS (the shutdown is the plain socket's, below the TLS layer),
and the request fails; `Deadline.expired` tells the caller the clock did it, not the server.

Name resolution happens before there is a socket to shut down: it is bounded by the resolver's own
timeouts, and a request whose connection came up after its deadline is cut as soon as it has one.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool


class Deadline:
    """One request's deadline and the sockets it has used so far."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.expired = False
        self._done = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []

    def adopt(self, sock: socket.socket) -> None:
        with self._lock:
            if self._done:
                return
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def finish(self) -> None:
        """The request is over: its (pooled) sockets are no longer this deadline's to shut."""
        with self._lock:
            self._done = True
            self._sockets.clear()

    @property
    def done(self) -> bool:
        return self._done


def _shut(sock: socket.socket) -> None:
    # socket.socket.shutdown, not SSLSocket.shutdown: the latter would drop the TLS object under a
    # thread that is reading through it. Shutting the descriptor wakes a blocked recv/send at once.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread for the process: expires each deadline when its time comes."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: Deadline) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline.at, next(self._order), deadline))
            if self._thread is None or not self._thread.is_alive():  # not alive: after a fork
                self._thread = threading.Thread(target=self._run, name="http-deadline", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].done:  # finished in time: forget it
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)[2].expire()


_WATCHDOG = _Watchdog()
_current: ContextVar[Deadline | None] = ContextVar("payverify_http_deadline", default=None)


@contextlib.contextmanager
def within(seconds: float) -> Iterator[Deadline]:
    """Requests made in this block (on a `session()`) end within `seconds` of its start, whatever the server."""
    deadline = Deadline(time.monotonic() + seconds)
    token = _current.set(deadline)
    _WATCHDOG.watch(deadline)
    try:
        yield deadline
    finally:
        deadline.finish()
        _current.reset(token)


def _adopt(sock: socket.socket | None) -> None:
    deadline = _current.get()
    if sock is not None and deadline is not None:
        deadline.adopt(sock)


class _Watched(urllib3.connection.HTTPConnection):
    """Mixed into whatever connection class a pool uses (plain, TLS, SOCKS)."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _adopt(sock)  # before TLS or a proxy's CONNECT: a trickling handshake is cut too
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _adopt(self.sock)  # a kept-alive connection: its socket already exists
        super().request(*args, **kwargs)


_classes: dict[type[HTTPConnectionPool], type[HTTPConnectionPool]] = {}
_classes_lock = threading.Lock()


def _watched_pool(pool_cls: type[HTTPConnectionPool]) -> type[HTTPConnectionPool]:
    with _classes_lock:
        if pool_cls not in _classes:
            conn_cls = pool_cls.ConnectionCls
            watched = type(f"Watched{conn_cls.__name__}", (_Watched, conn_cls), {})
            _classes[pool_cls] = type(f"Watched{pool_cls.__name__}", (pool_cls,), {"ConnectionCls": watched})
        return _classes[pool_cls]


def _watch_pools(manager: urllib3.PoolManager) -> urllib3.PoolManager:
    manager.pool_classes_by_scheme = {scheme: _watched_pool(cls)
                                      for scheme, cls in manager.pool_classes_by_scheme.items()}
    return manager


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections (direct or through a proxy) report their sockets to `within`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _watch_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        known = proxy in self.proxy_manager
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        return manager if known else _watch_pools(manager)


def session() -> requests.Session:
    """A requests session whose requests heed `within`."""
    s = requests.Session()
    adapter = DeadlineAdapter()
    s.mount("https://", adapter)
    s.mount("http://", adapter)
    return s

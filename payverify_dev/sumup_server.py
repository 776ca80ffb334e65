"""A local, scriptable HTTP server that behaves like the parts of SumUp's API payverify uses.

Used by end-to-end tests, the demo and benchmarks. Stdlib only; all state is guarded by one lock.
"""
import contextlib
import copy
import dataclasses
import datetime as _dt
import json
import re
import secrets
import socket
import ssl
import struct
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from payverify_dev.sumup_history import HistoryLedger, history_item, mirror_checkout

CHECKOUTS = "/v0.1/checkouts"
ME = "/v0.1/me"
_HISTORY = re.compile(r"/v2\.1/merchants/([^/]+)/transactions/history/?")
_TRANSACTION = re.compile(r"/v2\.1/merchants/([^/]+)/transactions/?")  # one, by ?transaction_code=
_NOT_FOUND = {"error_code": "NOT_FOUND", "message": "Resource not found"}  # the spec's Error
# SumUp's OpenAPI document declares 401 on the checkout routes as an RFC 9457 problem (type is required).
_UNAUTHORIZED = {"type": "about:blank", "title": "Unauthorized", "status": 401,
                 "detail": "Invalid or expired access token"}


def dumps(obj) -> str:
    """JSON-encode ``obj``; a Decimal becomes a number literal written exactly as ``str(Decimal)``."""
    if isinstance(obj, Decimal):
        if not obj.is_finite():
            raise ValueError(f"cannot encode {obj!r} as JSON")
        return str(obj)
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {dumps(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ", ".join(dumps(v) for v in obj) + "]"
    return json.dumps(obj)


def _txn_ids(checkout_id: str, salt: str) -> tuple[str, str, str]:
    """A deterministic (transaction_id, transaction_code, auth_code) for a checkout."""
    u = uuid.uuid5(uuid.NAMESPACE_URL, f"{checkout_id}/{salt}")
    return str(u), "T" + u.hex[:9].upper(), f"{u.int % 1000000:06d}"


def checkout_body(checkout_id: str, reference: str, amount: Decimal | str, currency: str, merchant_code: str,
                  status: str, *, transactions: list[dict] | None = None, **extra) -> dict:
    """A realistic checkout object (see SUMUP.md). ``extra`` fields are merged in last."""
    amount = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    now = _dt.datetime.now(_dt.UTC)
    body = {"id": checkout_id, "checkout_reference": reference, "amount": amount, "currency": currency,
            "merchant_code": merchant_code, "description": f"Order {reference}", "status": status,
            "date": now.strftime("%Y-%m-%dT%H:%M:%S.000+00:00"), "valid_until": None}
    if transactions is None:
        txn_status = {"PAID": "SUCCESSFUL", "FAILED": "FAILED"}.get(status)
        transactions = []
        if txn_status:
            tid, code, auth_code = _txn_ids(checkout_id, txn_status)
            txn = {"id": tid, "transaction_code": code, "amount": amount, "currency": currency,
                   "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
                   "status": txn_status, "payment_type": "ECOM", "installments_count": 1,
                   "merchant_code": merchant_code}
            if txn_status == "SUCCESSFUL":
                txn["auth_code"] = auth_code
            transactions.append(txn)
    if status == "PAID":
        ok = next((t for t in transactions if t.get("status") == "SUCCESSFUL"), None)
        tid, code = (ok.get("id"), ok.get("transaction_code")) if ok else _txn_ids(checkout_id, "SUCCESSFUL")[:2]
        body["transaction_code"], body["transaction_id"] = code, tid
    body["transactions"] = transactions
    body.update(extra)
    return body


@dataclass(frozen=True)
class Scripted:
    """One scripted reply. ``body=None`` with status 200 = normal handling (after ``delay``); with any
    other status = empty body. dict bodies are JSON-encoded, str/bytes are sent verbatim."""
    status: int = 200
    body: str | bytes | dict | list | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    reset: bool = False       # close the socket with an RST and no reply
    truncate: bool = False    # declare the full Content-Length, send half the body, then close
    trickle: float = 0.0      # send the whole reply, status line first, one byte every `trickle` seconds


@dataclass
class RequestRecord:
    method: str
    path: str                 # as requested, including the query string
    checkout_id: str | None   # set for GET /v0.1/checkouts/{id} only
    token_kind: str           # "api_key" | "access_token" | "unknown"
    status: int | None        # None: no reply sent (reset, or server stopping) or not answered yet
    timestamp: float          # time.monotonic() on arrival
    history_of: str | None = None  # the merchant code, for GET .../transactions/history only


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # clients that give up are expected
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version, sys_version = "FakeSumUp/1.0", ""
    disable_nagle_algorithm = True  # else delayed ACKs add ~40 ms per reply (headers, body sent apart)

    def log_message(self, format, *args):
        pass

    def setup(self):
        super().setup()
        self.server.fake._track(self.connection, add=True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, add=False)

    def _dispatch(self):
        fake = self.server.fake
        fake._in_flight(+1)
        try:
            fake._handle(self)
        finally:
            fake._in_flight(-1)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


class FakeSumUp:
    def __init__(self, *, latency: float = 0.0, client_id: str = "test-client", client_secret: str = "test-secret",
                 host: str = "127.0.0.1", port: int = 0, rotate_refresh_tokens: bool = True,
                 access_token_ttl: int = 3600, tls_context: "ssl.SSLContext | None" = None):
        self.tls_context = tls_context  # a server-side context: serve HTTPS instead of HTTP
        self.latency, self.client_id, self.client_secret = latency, client_id, client_secret
        self.host, self.port = host, port
        self.rotate_refresh_tokens, self.access_token_ttl = rotate_refresh_tokens, access_token_ttl
        self._lock, self._stopping = threading.RLock(), threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._api_keys: dict[str, str] = {}
        self._access: dict[str, tuple[str, float | None]] = {}  # token -> (merchant, expires_at monotonic)
        self._refresh: dict[str, list] = {}                     # token -> [merchant, revoked]; insertion order
        self._checkouts: dict[str, tuple[str | None, dict]] = {}  # id -> (owner, body)
        self._scripts: dict[str, deque[Scripted]] = {}
        self._ledgers: dict[str, HistoryLedger] = {}          # merchant -> its transaction history
        self._history_scripts: dict[str, deque[Scripted]] = {}
        self._token_script: deque[Scripted] = deque()
        self._global_fault: Scripted | None = None
        self._requests: list[RequestRecord] = []
        self._current = 0
        self.max_in_flight = 0  # the most requests handled at the same moment
        self._issued: list[str] = []  # refresh tokens issued by /token, in order

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "FakeSumUp":
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server((self.host, self.port), _Handler)
        if self.tls_context is not None:
            self._server.socket = self.tls_context.wrap_socket(self._server.socket, server_side=True,
                                                                do_handshake_on_connect=False)
        self._server.fake = self
        self.port = self._server.server_address[1]  # a restart after stop() reuses the same port
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"FakeSumUp:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if (server := self._server) is None:
            return
        self._server = None
        self._stopping.set()  # wakes scripted delays / latency sleeps
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:  # kill keep-alive connections so pooled clients cannot reach a stopped server
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "FakeSumUp":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeSumUp is not running; call start() first")
        return f"{'https' if self.tls_context is not None else 'http'}://{self.host}:{self.port}"

    # ---- credentials ---------------------------------------------------------------------------
    def add_api_key(self, key: str, merchant_code: str) -> None:
        with self._lock:
            self._api_keys[key] = merchant_code

    def add_access_token(self, token: str, merchant_code: str) -> None:
        with self._lock:
            self._access[token] = (merchant_code, None)

    def add_refresh_token(self, refresh_token: str, merchant_code: str) -> None:
        with self._lock:
            self._refresh.pop(refresh_token, None)
            self._refresh[refresh_token] = [merchant_code, False]

    def revoke_refresh_token(self, refresh_token: str) -> None:
        with self._lock:
            if refresh_token in self._refresh:
                self._refresh[refresh_token][1] = True

    def expire_access_token(self, token: str) -> None:
        with self._lock:
            if token in self._access:
                self._access[token] = (self._access[token][0], float("-inf"))

    def current_refresh_token(self, merchant_code: str) -> str | None:
        with self._lock:
            return next((t for t, (m, revoked) in reversed(self._refresh.items())
                         if m == merchant_code and not revoked), None)

    # ---- checkouts and faults ------------------------------------------------------------------
    def add_checkout(self, body: dict, *, owner: str | None = None) -> None:
        """Serve `body`; its SUCCESSFUL transactions also enter the owner's transaction history."""
        with self._lock:
            owner = owner or body.get("merchant_code")
            self._checkouts[body["id"]] = (owner, copy.deepcopy(body))
            if owner:
                mirror_checkout(self._ledgers.setdefault(owner, HistoryLedger()), body)

    def update_checkout(self, checkout_id: str, **fields) -> None:
        """Change the checkout; a SUCCESSFUL transaction it newly lists enters the history too."""
        with self._lock:
            owner, body = self._checkouts[checkout_id]
            body.update(copy.deepcopy(fields))
            if owner:
                mirror_checkout(self._ledgers.setdefault(owner, HistoryLedger()), body)

    def get_checkout(self, checkout_id: str) -> dict | None:
        with self._lock:
            entry = self._checkouts.get(checkout_id)
            return copy.deepcopy(entry[1]) if entry else None

    def script(self, checkout_id: str, *replies: Scripted) -> None:
        with self._lock:
            self._scripts.setdefault(checkout_id, deque()).extend(replies)

    def script_token(self, *replies: Scripted) -> None:
        with self._lock:
            self._token_script.extend(replies)

    def set_global_fault(self, reply: Scripted | None) -> None:
        """Answer every checkout, history and /v0.1/me request with `reply` until cleared (not /token)."""
        with self._lock:
            self._global_fault = reply

    # ---- transaction history -------------------------------------------------------------------
    def add_transaction(self, merchant_code: str, *, transaction_code: str, amount: Decimal | str | int,
                        currency: str = "GBP", status: str = "SUCCESSFUL", payment_type: str = "ECOM",
                        type: str = "PAYMENT", timestamp: _dt.datetime | None = None,
                        refunded_amount: Decimal | str | None = None, id: str | None = None) -> dict:
        """Add one transaction to the merchant's history (timestamp: now) and return the item as served.

        Back-dated, it counts as created then: changes_since after it finds it only once updated."""
        if timestamp is not None and timestamp.utcoffset() is None:
            raise ValueError("timestamp must be timezone-aware")
        when = timestamp or _dt.datetime.now(_dt.UTC)
        item = history_item(
            id=id or str(uuid.uuid4()), transaction_code=transaction_code, amount=Decimal(str(amount)),
            currency=currency, status=status, payment_type=payment_type, type=type, timestamp=when,
            refunded_amount=None if refunded_amount is None else Decimal(str(refunded_amount)))
        with self._lock:
            ledger = self._ledgers.setdefault(merchant_code, HistoryLedger())
            return copy.deepcopy(ledger.add(item, timestamp=when))

    def update_transaction(self, merchant_code: str, transaction_code: str, /, **fields) -> dict:
        """Change a transaction (e.g. status="REFUNDED", refunded_amount=...; or "CHARGE_BACK") and mark it
        modified now, so `changes_since` finds it. Fields are merged verbatim; returns the item as served."""
        with self._lock:
            ledger = self._ledgers.get(merchant_code)
            if ledger is None or transaction_code not in ledger:
                raise KeyError(f"{merchant_code} has no transaction {transaction_code!r}")
            item = ledger.update(transaction_code, copy.deepcopy(fields), now=_dt.datetime.now(_dt.UTC))
            return copy.deepcopy(item)

    def get_transaction(self, merchant_code: str, transaction_code: str) -> dict | None:
        with self._lock:
            ledger = self._ledgers.get(merchant_code)
            item = ledger.get(transaction_code) if ledger is not None else None
            return copy.deepcopy(item)

    def script_history(self, merchant_code: str, *replies: Scripted) -> None:
        """Replies for that merchant's history route, one per request, before normal paging resumes."""
        with self._lock:
            self._history_scripts.setdefault(merchant_code, deque()).extend(replies)

    def history_requests(self, merchant_code: str | None = None) -> list[RequestRecord]:
        """The history requests (for one merchant, or all), in arrival order: one per page asked."""
        with self._lock:
            return [dataclasses.replace(r) for r in self._requests if r.history_of is not None
                    and (merchant_code is None or r.history_of == merchant_code)]

    # ---- observability -------------------------------------------------------------------------
    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return [dataclasses.replace(r) for r in self._requests]

    def get_count(self, checkout_id: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self._requests if r.checkout_id is not None
                       and (checkout_id is None or r.checkout_id == checkout_id))

    @property
    def token_calls(self) -> int:
        with self._lock:
            return sum(1 for r in self._requests if r.method == "POST" and urlsplit(r.path).path == "/token")

    @property
    def refresh_tokens_issued(self) -> list[str]:
        with self._lock:
            return list(self._issued)

    def reset_counters(self) -> None:
        with self._lock:
            self._requests.clear()
            self._issued.clear()
            self.max_in_flight = 0

    def _in_flight(self, delta: int) -> None:
        with self._lock:
            self._current += delta
            self.max_in_flight = max(self.max_in_flight, self._current)

    # ---- request handling ----------------------------------------------------------------------
    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def _merchant_for(self, token: str | None) -> str | None:
        if token in self._api_keys:
            return self._api_keys[token]
        merchant, expires_at = self._access.get(token, (None, None))
        return merchant if expires_at is None or time.monotonic() < expires_at else None

    def _handle(self, h: _Handler) -> None:
        arrival = time.monotonic()
        raw = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        parts = urlsplit(h.path)
        path, method = parts.path, h.command
        auth = h.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        route, cid, history_of = None, None, None
        if method == "GET" and (match := _HISTORY.fullmatch(path)):
            route, history_of = "history", unquote(match.group(1))
        elif method == "GET" and (match := _TRANSACTION.fullmatch(path)):
            route, cid = "transaction", unquote(match.group(1))
        elif method == "GET" and path.rstrip("/") == ME:
            route = "me"
        elif method == "GET" and path.rstrip("/") == CHECKOUTS:
            route = "list"
        elif method == "GET" and path.startswith(CHECKOUTS + "/") and "/" not in path[len(CHECKOUTS) + 1:]:
            route, cid = "checkout", unquote(path[len(CHECKOUTS) + 1:])
        elif method == "POST" and path == "/token":
            route = "token"
        with self._lock:
            kind = "api_key" if token in self._api_keys else "access_token" if token in self._access else "unknown"
            rec = RequestRecord(method, h.path, cid, kind, None, arrival, history_of)
            self._requests.append(rec)
            scripted = None
            if route in ("list", "checkout", "history", "me", "transaction") and self._global_fault is not None:
                scripted = self._global_fault
            elif route == "checkout" and self._scripts.get(cid):
                scripted = self._scripts[cid].popleft()
            elif route == "history" and self._history_scripts.get(history_of):
                scripted = self._history_scripts[history_of].popleft()
            elif route == "token" and self._token_script:
                scripted = self._token_script.popleft()
        if self._stopping.wait(self.latency) or (scripted and self._stopping.wait(scripted.delay)):
            return self._abort(h)
        if scripted and scripted.reset:
            return self._abort(h)
        if scripted is None or (scripted.body is None and scripted.status == 200):
            status, payload, ctype = self._normal(route, cid or history_of, token, parts.query, raw)
            headers = dict(scripted.headers) if scripted else {}
        else:
            status, headers, body = scripted.status, dict(scripted.headers), scripted.body
            if body is None:
                payload, ctype = b"", None
            elif isinstance(body, (dict, list)):
                payload, ctype = dumps(body).encode(), "application/json"
            else:
                payload = body.encode() if isinstance(body, str) else body
                ctype = "text/html; charset=utf-8" if payload.lstrip()[:1] == b"<" else "application/json"
        if ctype and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = ctype
        with self._lock:
            rec.status = status
        if scripted and scripted.trickle > 0:
            return self._trickle(h, status, payload, headers, scripted.trickle)
        self._send(h, status, payload, headers, truncate=bool(scripted and scripted.truncate))

    def _trickle(self, h: _Handler, status: int, payload: bytes, headers: dict, interval: float) -> None:
        """What a stuck proxy does: every byte of the reply, the status line's included, `interval` apart."""
        head = [f"HTTP/1.1 {status} {h.responses.get(status, ('',))[0]}"]
        head += [f"{k}: {v}" for k, v in {**headers, "Content-Length": str(len(payload))}.items()]
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload
        h.close_connection = True
        try:
            for i in range(len(data)):
                h.wfile.write(data[i:i + 1])
                h.wfile.flush()
                if self._stopping.wait(interval):
                    return
        except OSError:
            pass  # the client gave up, as it should

    def _normal(self, route, key, token, query, raw) -> tuple[int, bytes, str]:
        """Normal handling; `key` is the checkout id or, on the history route, the merchant code."""
        with self._lock:
            if route == "token":
                status, body = self._token(raw)
            elif route is None:
                status, body = 404, _NOT_FOUND
            elif (merchant := self._merchant_for(token)) is None or (route in ("history", "transaction")
                                                                     and merchant != key):
                return 401, dumps(_UNAUTHORIZED).encode(), "application/problem+json"
            elif route == "me":
                status, body = 200, {"account": {"type": "normal"},
                                     "merchant_profile": {"merchant_code": merchant, "country": "GB"}}
            elif route == "history":
                status, body = self._ledgers.get(merchant, HistoryLedger()).page(query)
            elif route == "transaction":  # TransactionFull: the history item's fields and the merchant
                codes = parse_qs(query).get("transaction_code") or [""]
                found = self._ledgers.get(merchant, HistoryLedger()).get(codes[0])
                status, body = (200, {**found, "merchant_code": merchant}) if found else (404, _NOT_FOUND)
            elif route == "checkout":
                owner, co = self._checkouts.get(key, (None, None))
                status, body = (200, co) if co is not None and owner == merchant else (404, _NOT_FOUND)
            else:
                refs = parse_qs(query).get("checkout_reference")
                status, body = 200, [co for owner, co in self._checkouts.values() if owner == merchant
                                     and (refs is None or co.get("checkout_reference") in refs)]
            return status, dumps(body).encode(), "application/json"

    def _token(self, raw: bytes) -> tuple[int, dict]:
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return 401, {"error": "invalid_client", "error_description": "Client authentication failed"}
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type", "error_description": "Unsupported grant type"}
        old = form.get("refresh_token", "")
        entry = self._refresh.get(old)
        if entry is None or entry[1]:
            return 400, {"error": "invalid_grant",
                         "error_description": "The refresh token is invalid, expired or revoked"}
        merchant = entry[0]
        access = "at_" + secrets.token_urlsafe(24)
        self._access[access] = (merchant, time.monotonic() + self.access_token_ttl)
        new = old
        if self.rotate_refresh_tokens:
            entry[1] = True
            new = "rt_" + secrets.token_urlsafe(24)
            self._refresh[new] = [merchant, False]
            self._issued.append(new)
        return 200, {"access_token": access, "token_type": "Bearer", "expires_in": self.access_token_ttl,
                     "refresh_token": new, "scope": "payments"}

    @staticmethod
    def _send(h: _Handler, status: int, payload: bytes, headers: dict, *, truncate: bool) -> None:
        try:
            h.send_response(status)
            declared = max(len(payload), 64) if truncate else len(payload)
            if truncate:
                payload, h.close_connection = payload[: len(payload) // 2], True
            for k, v in headers.items():
                h.send_header(k, str(v))
            h.send_header("Content-Length", str(declared))
            h.end_headers()
            h.wfile.write(payload)
            h.wfile.flush()
        except OSError:
            h.close_connection = True

    @staticmethod
    def _abort(h: _Handler) -> None:
        """Close the connection with an RST and no reply: the client sees a connection reset."""
        h.close_connection = True
        with contextlib.suppress(OSError):
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.rfile.close()
            h.connection.close()

"""Observers for the monitoring tests: a heartbeat receiver and a Prometheus text-format reader."""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PING_TOKEN = "0b7f3c1e-5d2a-4c8e-9f61-canary-ping-token"


HOST = "web1.example.je"


class PingServer:
    """A local HTTP server recording each request; answers the queued statuses, then 200."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self.statuses = list(statuses or [])
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                server.requests.append((self.command, self.path, self.rfile.read(length)))
                status = server.statuses.pop(0) if server.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            do_GET = do_POST = do_HEAD = _answer

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/ping/{PING_TOKEN}"

    def __enter__(self) -> PingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')


_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


# The samples a family of each type may have, by their suffix to the family's name.
_SUFFIXES = {"summary": ("", "_sum", "_count"), "histogram": ("_bucket", "_sum", "_count")}


def _unescape(value: str) -> str:
    return re.sub(r"\\([\\\"n])", lambda m: {"n": "\n"}.get(m[1], m[1]), value)


def parse_prometheus(text: str) -> dict[tuple[str, frozenset], float]:
    """A strict little parser of the text format: every line is HELP, TYPE or `name{labels} value`;
    every sample belongs to a family declared by TYPE before it; no sample twice; a histogram's
    buckets are cumulative and end at +Inf, which is its count."""
    assert text.endswith("\n") and "\n\n" not in text
    types: dict[str, str] = {}
    helped: set[str] = set()
    samples: dict[tuple[str, frozenset], float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert name not in helped, f"HELP twice for {name}"
            helped.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "summary", "histogram", "untyped"), line
            assert name not in types, f"TYPE twice for {name}"
            types[name] = kind
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, label_text, value = match[1], match[2] or "", match[3]
        family = name if name in types else re.sub(r"_(sum|count|bucket)$", "", name)
        assert family in types, f"{name} has no TYPE line before it"
        assert name[len(family):] in _SUFFIXES.get(types[family], ("",)), f"not a {types[family]} sample: {line!r}"
        labels, pos = {}, 0
        while pos < len(label_text):
            lm = _LABEL.match(label_text, pos)
            assert lm, f"bad labels in {line!r}"
            labels[lm[1]] = _unescape(lm[2])
            pos = lm.end()
        key = (name, frozenset(labels.items()))
        assert key not in samples, f"sample twice: {line!r}"
        samples[key] = float(value)
    assert helped == set(types), "every family has HELP and TYPE"
    for family in (name for name, kind in types.items() if kind == "histogram"):
        assert_histogram(samples, family)
    return samples


def histogram_buckets(samples: dict, family: str) -> list[tuple[float, float]]:
    """A histogram's (upper bound, cumulative count) pairs in order, +Inf last (one without other labels)."""
    return sorted((float(dict(key)["le"]), v) for (name, key), v in samples.items() if name == f"{family}_bucket")


def assert_histogram(samples: dict, family: str) -> None:
    buckets = histogram_buckets(samples, family)
    assert buckets and buckets[-1][0] == float("inf"), f"{family} has no +Inf bucket"
    counts = [n for _, n in buckets]
    assert counts == sorted(counts), f"{family}'s buckets are not cumulative: {buckets}"
    assert buckets[-1][1] == value(samples, f"{family}_count"), f"{family}: +Inf is not the count"
    assert (f"{family}_sum", frozenset()) in samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]

"""Named SQL loaded once from queries.sql: each query under a `-- name: NAME` header."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    parts = _HEADER.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):  # split with one group: always pairs
        sql = "\n".join(line for line in body.strip().splitlines() if not line.lstrip().startswith("--"))
        if name in queries:
            raise ValueError(f"query {name} is defined twice")
        queries[name] = sql.strip()
    return queries


@cache
def queries() -> dict[str, str]:
    return parse_queries(resources.files("payverify.db").joinpath("queries.sql").read_text(encoding="utf-8"))

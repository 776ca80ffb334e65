"""The named-query files: one line saying what each query does, fragments put in at load time."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from payverify.db.queries import parse_queries

FILES = [("payverify.db", "queries.sql"), ("payverify.db", "catalog.sql"), ("payverify_dev", "demo.sql")]


@pytest.mark.parametrize(("package", "name"), FILES)
def test_every_query_has_one_description_line(package, name):
    text = resources.files(package).joinpath(name).read_text(encoding="utf-8")
    for header, comments in re.findall(r"^-- (?:name|fragment): (\w+)\n((?:--.*\n)*)", text, re.MULTILINE):
        assert len(comments.splitlines()) == 1, f"{name}: {header} needs exactly one description line"


def test_a_fragment_is_put_into_the_queries_and_is_no_query():
    text = "-- fragment: due\n-- why\n(x > 1)\n\n-- name: q\n-- what\nSELECT 1 WHERE {due} AND y\n"
    assert parse_queries(text) == {"q": "SELECT 1 WHERE (x > 1) AND y"}


def test_an_unknown_fragment_is_refused():
    with pytest.raises(ValueError, match="no fragment dew"):
        parse_queries("-- name: q\nSELECT 1 WHERE {dew}\n")

"""Fixtures shared by the simulator's own tests (test_simulator_*): a simulator with two merchant
accounts, each with its API key, and a plain HTTP session to talk to it."""

from __future__ import annotations

import pytest
import requests

from payverify_dev.sumup_server import FakeSumUp

MERCHANT, OTHER = "MH4H92C7", "MOTHER01"
KEY, OTHER_KEY = "sup_sk_test_key", "sup_sk_other_key"


@pytest.fixture
def fake():
    with FakeSumUp() as server:
        server.add_api_key(KEY, MERCHANT)
        server.add_api_key(OTHER_KEY, OTHER)
        yield server


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session

"""pytest fixtures for the fake Compute Engine (registered through the `pytest11` entry point).

`fake_gce` is a running `FakeGCE`, reset before each test; `gce_clients` builds real
`compute_v1` clients against it.
"""

from __future__ import annotations

import pytest

from . import FakeGCE


@pytest.fixture(scope="session")
def _fake_gce_server():
    with FakeGCE(operation_seconds=0.05) as fake:
        yield fake


@pytest.fixture
def fake_gce(_fake_gce_server):
    _fake_gce_server.reset()
    yield _fake_gce_server
    _fake_gce_server.reset()

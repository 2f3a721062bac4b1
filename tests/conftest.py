"""Shared fixtures: a lab of namespaces torn down even when a test fails."""
from __future__ import annotations

import pytest

from appliance.lab.netns import Lab, sweep_stale
from support.guards import dev_null_stays_a_device  # noqa: F401  (autouse)
from support.needs import require_root


@pytest.fixture(scope="session", autouse=True)
def _sweep_stale_namespaces():
    sweep_stale()
    yield


@pytest.fixture
def lab():
    require_root()
    with Lab() as the_lab:
        yield the_lab

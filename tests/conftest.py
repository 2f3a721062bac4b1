"""Shared fixtures: a lab of namespaces torn down even when a test fails."""
from __future__ import annotations

import os
import shutil

import pytest

from appliance.lab.netns import Lab, sweep_stale
from guards import dev_null_stays_a_device  # noqa: F401  (autouse)


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (network namespaces); run the suite as root as the README says")


def require_tool(*names: str, package: str) -> None:
    for name in names:
        if shutil.which(name) is None:
            pytest.fail(f"{name} not found: install the Debian package {package} (./setup.sh does)")


@pytest.fixture(scope="session", autouse=True)
def _sweep_stale_namespaces():
    sweep_stale()
    yield


@pytest.fixture
def lab():
    require_root()
    with Lab() as the_lab:
        yield the_lab

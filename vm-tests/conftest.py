"""End-to-end lab fixtures: the appliance, the golden client and QEMU machines in namespaces.

Failed runs keep their logs (consoles, appliance log, install logs) under
artifacts/<test name>/ at the top of the repository.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from appliance.lab.install_lab import InstallLab  # noqa: E402
from appliance.lab.netns import Lab, sweep_stale  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

from guards import dev_null_stays_a_device  # noqa: E402,F401  (autouse)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def install_lab(request, tmp_path):
    if os.geteuid() != 0:
        pytest.fail("the end-to-end lab needs root (namespaces, loop devices, QEMU taps)")
    sweep_stale()
    lab = Lab()
    ilab = InstallLab(lab, tmp_path)
    try:
        yield ilab
    finally:
        failed = any(getattr(request.node, f"rep_{w}", None) and getattr(request.node, f"rep_{w}").failed
                     for w in ("setup", "call"))
        try:
            ilab.close()
        finally:
            lab.close()
        if failed:
            keep = ARTIFACTS / request.node.name
            shutil.rmtree(keep, ignore_errors=True)
            keep.mkdir(parents=True)
            for pattern in ("*.log", "*.toml", "log/*.log"):
                for f in tmp_path.glob(pattern):
                    shutil.copy2(f, keep / f.name)

"""End-to-end lab fixtures: the appliance, the golden client and QEMU machines in namespaces.

Failed runs keep their logs (consoles, appliance log, install logs) under
artifacts/<test name>/ at the top of the repository.
"""
from __future__ import annotations

import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from appliance.lab.install_lab import InstallLab  # noqa: E402
from appliance.lab.netns import Lab, sweep_stale  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

from support.guards import dev_null_stays_a_device  # noqa: E402,F401  (autouse)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


FAILED_KEY = pytest.StashKey[bool]()


@contextmanager
def running_lab(request, tmp_path_factory, **options) -> Iterator[InstallLab]:
    """An InstallLab with its appliance up, torn down after; a failure keeps its logs.

    options go to InstallLab (golden="debian" for golden_debian.py's system)."""
    if os.geteuid() != 0:
        pytest.fail("the end-to-end lab needs root (namespaces, loop devices, QEMU taps)")
    sweep_stale()
    workdir = tmp_path_factory.mktemp("lab")
    lab = Lab()
    ilab = InstallLab(lab, workdir, **options)
    request.node.stash[FAILED_KEY] = False
    try:
        ilab.up()
        yield ilab
    except BaseException:
        request.node.stash[FAILED_KEY] = True
        raise
    finally:
        try:
            ilab.close()
        finally:
            lab.close()
        if request.node.stash[FAILED_KEY]:
            keep = ARTIFACTS / request.node.name.replace("/", "_")
            shutil.rmtree(keep, ignore_errors=True)
            keep.mkdir(parents=True)
            for pattern in ("*.log", "*.toml", "state/../log/*.log"):
                for f in workdir.glob(pattern):
                    shutil.copy2(f, keep / f.name)


@pytest.fixture(scope="module")
def install_lab(request, tmp_path_factory):
    """One appliance with the golden image captured, shared by a module's scenarios."""
    with running_lab(request, tmp_path_factory) as ilab:
        ilab.capture("golden_v1", ip_assignment="static_dhcp")
        yield ilab


@pytest.fixture(scope="module")
def ipxe_uefi_lab(request, tmp_path_factory):
    """An appliance whose UEFI machines get iPXE (dhcp.uefi_loader = "ipxe"; Secure Boot off only)."""
    with running_lab(request, tmp_path_factory, uefi_loader="ipxe") as ilab:
        ilab.capture("golden_v1", ip_assignment="static_dhcp")
        yield ilab


@pytest.fixture(scope="module")
def fleet_install_lab(request, tmp_path_factory):
    """An appliance whose host groups install by BitTorrent ("swarm") and multicast ("mcast")."""
    fleet = {"groups": {"swarm": "bittorrent", "mcast": "multicast"}, "seed_seconds": 15,
             "join_timeout": 90, "min_receivers": 2, "min_wait": 0, "max_wait": 120}
    with running_lab(request, tmp_path_factory, fleet=fleet) as ilab:
        ilab.capture("golden_v1", ip_assignment="static_dhcp")
        yield ilab


@pytest.fixture(scope="module")
def manual_lab(request, tmp_path_factory):
    """An appliance in the manual's boot-in-order mode (dhcp.in_order), with a static_dhcp and a
    dynamic_dhcp capture of the golden client."""
    with running_lab(request, tmp_path_factory, dhcp={"in_order": True}) as ilab:
        ilab.capture("golden_v1", ip_assignment="static_dhcp")
        ilab.capture("golden_dyn", ip_assignment="dynamic_dhcp")
        yield ilab


@pytest.fixture(scope="module")
def debian_lab(request, tmp_path_factory):
    """One appliance with an image of the Debian golden client (golden_debian.py) captured."""
    with running_lab(request, tmp_path_factory, golden="debian") as ilab:
        ilab.capture("debian12", ip_assignment="static_dhcp")
        yield ilab


@pytest.fixture(autouse=True)
def _note_failures(request):
    """Mark the module's lab as failed when one of its tests fails, to keep its logs."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        request.node.parent.stash[FAILED_KEY] = True

"""End to end with a real distribution: a Debian golden client, captured and PXE-installed.

The golden client is golden_debian.py's bookworm system (systemd, Debian's
kernel and initramfs, GRUB, systemd-networkd) on a GPT disk. The appliance
captures it with getimage, addclients assigns it, and a QEMU machine installs
it over PXE. The installed disk must then boot by itself through GRUB and
Debian's initramfs into systemd, which prints (from a unit ordered after
network-online.target) the hostname and address the appliance gave it.
"""
from __future__ import annotations

import json
import time

import pytest

INSTALL_TIMEOUT = 1200
BOOT_TIMEOUT = 600
BOOTED = (r"SI-DEBIAN-BOOTED hostname=(?P<hostname>\S+) ip=(?P<ip>\S+) systemd=(?P<state>\S+) "
          r"pid1=(?P<pid1>\S+) firmware=(?P<firmware>\S+) failed=(?P<failed>\S+)")

pytestmark = pytest.mark.timeout(3000)


@pytest.fixture(scope="module")
def debian_hosts(debian_lab):
    return debian_lab.addclients("debian12", "deb", 2)


def install_and_boot(lab, machine) -> dict:
    """Power on; the install must succeed and the installed disk boot to the marker."""
    t0 = time.time()
    machine.guest.start()
    run = lab.wait_installed(machine.hostname, INSTALL_TIMEOUT)
    t1 = time.time()
    booted = machine.guest.wait_for(BOOTED, BOOT_TIMEOUT)
    t2 = time.time()
    lab.timings[f"{machine.hostname} install"] = t1 - t0
    lab.timings[f"{machine.hostname} boot to marker"] = t2 - t1
    return {"run": run, "booted": booted.groupdict()}


def test_debian_bios_install_boots_its_own_systemd(debian_lab, debian_hosts):
    lab = debian_lab
    node = lab.machine("deb1", "52:54:00:77:01:11", firmware="bios", disk_size="2G")
    try:
        got = install_and_boot(lab, node)
    finally:
        node.guest.stop()
    run, booted = got["run"], got["booted"]
    image = next(i for i in lab.api("/api/images") if i["name"] == "debian12")
    print(json.dumps({"timings": lab.timings, "image": image, "install bytes": run["bytes"], "booted": booted},
                     indent=1))
    assert run["state"] == "succeeded" and run["percent"] == 100
    assert run["bytes"] > 300 * 2**20, "the Debian image is hundreds of MiB; the install moved less"
    assert booted["pid1"] == "systemd", "the installed disk did not boot into its own systemd"
    assert (booted["hostname"], booted["ip"]) == ("deb1", "10.77.0.11/24"), "static_dhcp: addclients' name and address"
    assert booted["firmware"] == "bios"
    assert booted["state"] == "running", f"systemd reached {booted['state']}; failed units: {booted['failed']}"
    console = node.guest.console()
    assert "Debian GNU/Linux" in console or "Welcome to" in console, "systemd's own boot messages are missing"
    assert next(h for h in lab.api("/api/hosts") if h["hostname"] == "deb1")["netboot"] == "local"

"""The manual's whole flow, for real: capture a golden client, PXE-install QEMU machines."""
from __future__ import annotations

import re
import time

INSTALL_TIMEOUT = 900


def test_bios_machine_installs_and_boots_its_own_disk(install_lab):
    lab = install_lab
    lab.up()
    image = lab.capture("golden_v1", ip_assignment="static_dhcp")
    assert image["latest"] == 1
    hosts = lab.addclients("golden_v1", "node", 2)
    assert hosts == ["node1", "node2"]
    node = lab.machine("node1", "52:54:00:77:00:11", firmware="bios")
    node.guest.start()
    try:
        t = time.time()
        run = lab.wait_installed("node1", INSTALL_TIMEOUT)
        installed_at = time.time() - t
        assert run["percent"] == 100 and run["bytes"] > 10 * 2**20
        booted = node.guest.wait_for(r"SI-GOLDEN-BOOTED hostname=(\S+) ip=(\S+)", 300)
        assert booted.group(1) == "node1"
        assert booted.group(2) == "10.77.0.11/24", "static_dhcp: the reservation addclients wrote"
        host = next(h for h in lab.api("/api/hosts") if h["hostname"] == "node1")
        assert host["netboot"] == "local"
    finally:
        node.guest.stop()
    # Second power-on: PXE again, but netboot-once sends it to its own disk.
    node.guest.start()
    try:
        again = node.guest.wait_for(r"SI-GOLDEN-BOOTED hostname=(\S+)", 300)
        assert again.group(1) == "node1"
        assert "autoinstall" not in node.guest.console()[:again.start()].lower()
        runs = [r for r in lab.api("/api/installs") if r["hostname"] == "node1"]
        assert len(runs) == 1, "the second boot must not install again"
    finally:
        node.guest.stop()
    print(f"installed in {installed_at:.0f}s; timings {lab.timings}")

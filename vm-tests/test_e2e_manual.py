"""The manual's own orders, with QEMU machines: section 13.16's "addclients, then boot the
machines in the order you want, then mkdhcpstatic" (dhcp.in_order), and the dynamic_dhcp
method seen on an installed machine."""
from __future__ import annotations

import time

INSTALL_TIMEOUT = 900
BOOT_TIMEOUT = 300
BOOTED = r"SI-GOLDEN-BOOTED hostname=(\S+) ip=(\S+) root=(\S+) firmware=(\S+) secureboot=(\S+) iface=(\S+)"


def _mac_of(lab, hostname):
    return next((h["mac"] for h in lab.api("/api/hosts") or [] if h["hostname"] == hostname), None)


def test_boot_in_order_then_mkdhcpstatic(manual_lab):
    lab = manual_lab
    lab.addclients("golden_v1", "node", 2)           # names and addresses, no MACs yet
    first = lab.machine("node1", "52:54:00:77:02:21", enrol=False)
    second = lab.machine("node2", "52:54:00:77:02:22", enrol=False)
    try:
        first.guest.start()
        deadline = time.time() + BOOT_TIMEOUT
        while _mac_of(lab, "node1") != "52:54:00:77:02:21":
            assert time.time() < deadline, "the first machine to boot did not become node1"
            time.sleep(1)
        second.guest.start()
        for machine in (first, second):
            lab.wait_installed(machine.hostname, INSTALL_TIMEOUT)
        booted = {m.hostname: m.guest.wait_for(BOOTED, BOOT_TIMEOUT).groups()[:2] for m in (first, second)}
    finally:
        first.guest.stop()
        second.guest.stop()
    assert booted == {"node1": ("node1", "10.77.0.11/24"), "node2": ("node2", "10.77.0.12/24")}
    assert _mac_of(lab, "node2") == "52:54:00:77:02:22"
    events = lab.si("events", "--host", "node2").stdout
    assert "52:54:00:77:02:22 booted next: it is node2" in events, events
    out = lab.si("mkdhcpstatic").stdout
    assert "no changes" in out, "booting in order already recorded what mkdhcpstatic records"


def test_dynamic_dhcp_installed_machine_gets_a_pool_address(manual_lab):
    lab = manual_lab
    lab.addclients("golden_dyn", "node", 1, start=3)
    node = lab.machine("node3", "52:54:00:77:02:23")
    try:
        node.guest.start()
        run = lab.wait_installed("node3", INSTALL_TIMEOUT)
        hostname, ip = node.guest.wait_for(BOOTED, BOOT_TIMEOUT).groups()[:2]
    finally:
        node.guest.stop()
    assert "10.77.0.13" in run["log"], "it installed with its own address (its name is found by it)"
    last = int(ip.split("/")[0].rsplit(".", 1)[1])
    assert hostname == "node3" and 100 <= last <= 199, f"installed, it should take a pool address: {ip}"

"""End to end, for real: a golden client captured, QEMU machines PXE-installed from it.

All scenarios share one appliance and one captured image (the module's lab);
each checks what its machine printed on its serial console after booting the
installed disk by itself.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

INSTALL_TIMEOUT = 900
BOOT_TIMEOUT = 300
BOOTED = r"SI-GOLDEN-BOOTED hostname=(\S+) ip=(\S+) root=(\S+) firmware=(\S+) secureboot=(\S+) iface=(\S+)"


@pytest.fixture(scope="module")
def hosts(install_lab):
    return install_lab.addclients("golden_v1", "node", 9)


def installed_and_booted(lab, machine):
    """Power on, wait for the install to succeed and the installed system to boot."""
    machine.guest.start()
    t = time.time()
    run = lab.wait_installed(machine.hostname, INSTALL_TIMEOUT)
    booted = machine.guest.wait_for(BOOTED, BOOT_TIMEOUT)
    lab.timings[f"{machine.hostname} install+boot"] = time.time() - t
    return run, booted


def install_then_stop(lab, machine):
    """installed_and_booted, then power off: (run, booted, the whole console of that power-on)."""
    try:
        run, booted = installed_and_booted(lab, machine)
        return run, booted, machine.guest.console()
    finally:
        machine.guest.stop()


def test_bios_install_then_netboot_once(install_lab, hosts):
    """The manual's flow on a BIOS machine; a larger disk than the golden client's is used."""
    lab = install_lab
    node = lab.machine("node1", "52:54:00:77:00:11", firmware="bios", disk_size="1G")
    try:
        run, booted = installed_and_booted(lab, node)
        assert run["percent"] == 100 and run["bytes"] > 10 * 2**20
        assert booted.groups()[0:2] == ("node1", "10.77.0.11/24"), "static_dhcp: addclients' address"
        assert booted.group(4) == "bios"
        disk = node.guest.wait_for(r"SI-GOLDEN-DISK root_kb=(\d+)", 30)
        assert int(disk.group(1)) > 900_000, "the root file system did not grow into the 1 GiB disk"
        assert next(h for h in lab.api("/api/hosts") if h["hostname"] == "node1")["netboot"] == "local"
        # The operator's record of it: events in the store and one log line each.
        events = [json.loads(line) for line in lab.si("events", "--host", "node1", "--json").stdout.splitlines()]
        kinds = [e["kind"] for e in events]
        assert kinds[0] == "pxe" and {"lease", "start", "phase", "succeeded"} <= set(kinds), kinds
        log = lab.appliance.log_path.read_text()
        assert "node1: PXE boot: " in log and "node1: install of golden_v1 succeeded after" in log, log[-3000:]
    finally:
        node.guest.stop()
    node.guest.start()  # second power-on: PXE again, netboot-once sends it to its disk
    try:
        again = node.guest.wait_for(BOOTED, BOOT_TIMEOUT)
        assert again.group(1) == "node1"
        assert "SystemImager" not in node.guest.console()[:again.start()]
        assert len([r for r in lab.api("/api/installs") if r["hostname"] == "node1"]) == 1
    finally:
        node.guest.stop()


def test_console_in_a_browser_follows_an_install(install_lab, hosts, request):
    """The operator's view of a real install: headless Chromium on the web console, in the
    appliance's namespace. The host's row goes from assigned to installing to installed, its
    log tail grows, and reinstall is refused without the operator token and done with it."""
    from support.console_browser import browser, click, flash, host_state, wait_until

    from appliance.lab.appliance_ns import _http_port
    lab = install_lab
    lab.addclients("golden_v1", "node", 1, start=10)
    node = lab.machine("node10", "52:54:00:77:00:1a", firmware="bios", disk_size="1G")
    url = f"http://127.0.0.1:{_http_port(lab.appliance.config)}/"
    tail = lambda d: d.find_element("css selector", '#runs tr.tail[data-host="node10"] pre').text
    try:
        with browser(request.node.name, netns=lab.appliance.ns) as d:
            d.get(url)
            wait_until(d, lambda d: d.find_element("tag name", "body").get_attribute("data-ready"), "the page")
            assert host_state(d, "node10") == "assigned"
            node.guest.start()
            wait_until(d, lambda d: host_state(d, "node10") == "installing", "node10 installing", INSTALL_TIMEOUT)
            click(d, '#runs tr.run[data-host="node10"] button[data-action="log"]')
            wait_until(d, lambda d: "SystemImager" in tail(d), "its log tail", 120)
            first = len(tail(d))
            wait_until(d, lambda d: host_state(d, "node10") == "installed", "node10 installed", INSTALL_TIMEOUT)
            assert len(tail(d)) > first, "the tail grew while it installed"
            assert lab.wait_installed("node10", 10)["state"] == "succeeded"

            click(d, '#host-rows tr[data-host="node10"] button[data-action="reinstall"]')
            wait_until(d, lambda d: "refused" in flash(d), "a refusal without the token")
            assert lab.si("hosts", "show", "node10", "--json").stdout.count('"netboot": "local"') == 1
            d.find_element("id", "token").send_keys(lab.si("console", "token").stdout.strip())
            click(d, '#token-form button[type="submit"]')
            click(d, '#host-rows tr[data-host="node10"] button[data-action="reinstall"]')
            wait_until(d, lambda d: "next PXE boot autoinstalls" in flash(d), "the reinstall done")
            wait_until(d, lambda d: host_state(d, "node10") == "assigned", "node10 assigned again")
        assert next(h for h in lab.api("/api/hosts") if h["hostname"] == "node10")["netboot"] == "install"
    finally:
        node.guest.stop()


def test_uefi_install_on_gpt_with_esp(install_lab, hosts):
    """UEFI with Secure Boot off, through the default UEFI loader (Debian's signed shim and GRUB)."""
    lab = install_lab
    node = lab.machine("node2", "52:54:00:77:00:12", firmware="uefi", disk_size="1G")
    try:
        run, booted = installed_and_booted(lab, node)
        assert booted.groups()[0:2] == ("node2", "10.77.0.12/24")
        assert booted.group(4) == "uefi", "the installed disk did not boot through UEFI"
        assert booted.group(5) == "disabled"
        console = node.guest.console()
        assert "NBP filename is shimx64.efi" in console and "Fetching Netboot Image grubx64.efi" in console
        # After the install the network GRUB starts the disk's own loader: the firmware's
        # other network boot options (PXEv6, HTTP boot) are never tried.
        after = console.split("node2 is installed: boot the local disk", 1)[1]
        assert "Start PXE over IPv6" not in after and "HTTP Boot" not in after, after[-2000:]
    finally:
        node.guest.stop()


def test_secure_boot_install_through_signed_shim_and_grub(install_lab, hosts):
    """Secure Boot on with Microsoft's keys (OVMF's secboot build and .ms variables): shim, Debian's
    signed network GRUB and signed kernel run the install; the disk gets shim and signed GRUB and
    boots with Secure Boot still on, as its SecureBoot variable says. (That this firmware refuses
    an unsigned loader is tests/test_secure_boot_firmware.py.)"""
    lab = install_lab
    node = lab.machine("node6", "52:54:00:77:00:16", firmware="uefi-secure", disk_size="1G")
    run, booted, console = install_then_stop(lab, node)
    installer = console[:booted.start()]
    assert "NBP filename is shimx64.efi" in installer and "Fetching Netboot Image grubx64.efi" in installer
    # Printed by the installer's kernel, then by the installed system's.
    assert installer.count("secureboot: Secure boot enabled") == 2, "a kernel ran without Secure Boot"
    assert "Secure Boot ready" in run["log"], run["log"][-1500:]
    assert booted.groups()[0:2] == ("node6", "10.77.0.16/24") and booted.group(4) == "uefi"
    assert booted.group(5) == "enabled", "the installed system does not read SecureBoot on from efivars"


def test_static_and_replicant_keep_their_network(install_lab, hosts):
    lab = install_lab
    lab.capture("golden_static", ip_assignment="static")
    lab.capture("golden_replicant", ip_assignment="replicant")
    lab.addclients("golden_static", "node", 1, start=3)
    lab.addclients("golden_replicant", "node", 1, start=4)
    static = lab.machine("node3", "52:54:00:77:00:13")
    replicant = lab.machine("node4", "52:54:00:77:00:14")
    try:
        static.guest.start()
        replicant.guest.start()
        for machine in (static, replicant):
            lab.wait_installed(machine.hostname, INSTALL_TIMEOUT)
        s = static.guest.wait_for(BOOTED, BOOT_TIMEOUT)
        r = replicant.guest.wait_for(BOOTED, BOOT_TIMEOUT)
        boot_s = static.guest.console()[static.guest.console().rfind("Run /init"):]
        boot_r = replicant.guest.console()[replicant.guest.console().rfind("Run /init"):]
        assert s.group(2) == "10.77.0.13/24" and "udhcpc" not in boot_s, "static: no DHCP after install"
        assert "udhcpc: lease of" in boot_r, "replicant: the image's own DHCP configuration stays"
    finally:
        static.guest.stop()
        replicant.guest.stop()


def test_unknown_machine_is_not_installed(install_lab, hosts):
    lab = install_lab
    stranger = lab.machine("stranger", "52:54:00:77:00:99", enrol=False, disk_size="256M")
    disk = stranger.guest.disk
    try:
        stranger.guest.start()
        deadline = time.time() + 120
        while time.time() < deadline and not any(
                l["mac"] == "52:54:00:77:00:99" for l in lab.api("/api/leases") or []):
            time.sleep(2)
        assert any(l["mac"] == "52:54:00:77:00:99" for l in lab.api("/api/leases")), "it never got an address"
        time.sleep(20)  # time enough to fetch its boot script and act on it
    finally:
        stranger.guest.stop()
    assert not any(r["hostname"] == "stranger" for r in lab.api("/api/installs"))
    with open(disk, "rb") as f:
        assert not any(f.read(1 << 20)), "the unknown machine's disk was written"


def test_autoinstall_cd_with_local_cfg(install_lab, hosts, tmp_path):
    lab = install_lab
    local_cfg = tmp_path / "local.cfg"
    local_cfg.write_text("HOSTNAME=node5\nDOMAINNAME=lab.example\nDEVICE=eth0\nIPADDR=10.77.0.15\n"
                         "NETMASK=255.255.255.0\nGATEWAY=10.77.0.1\nIMAGESERVER=10.77.0.1\n")
    iso = lab.workdir / "autoinstall.iso"
    lab.si("mkautoinstallcd", "--out-file", str(iso), "--local-cfg", str(local_cfg), "--serial", "ttyS0,115200n8")
    node = lab.machine("node5", "52:54:00:77:00:15", cdrom=iso, boot=("disk", "cdrom"))
    try:
        run, booted = installed_and_booted(lab, node)
        assert booted.group(1) == "node5"
        assert "local.cfg" in node.guest.console()
    finally:
        node.guest.stop()


def test_e1000_nic(install_lab, hosts):
    """An Intel e1000 NIC (BIOS, iPXE's e1000 ROM): the initrd's e1000 driver installs, the system comes up on it."""
    lab = install_lab
    node = lab.machine("node7", "52:54:00:77:00:17", nic_model="e1000")
    run, booted, console = install_then_stop(lab, node)
    assert "DHCP on eth0 (52:54:00:77:00:17)" in run["log"], run["log"][-2000:]
    # The installed system's driver probe, e.g. "e1000 0000:00:03.0 eth0: (PCI:33MHz:32-bit) <mac>".
    assert re.search(r"e1000 \S+ eth0: .*52:54:00:77:00:17", console), console[-3000:]
    assert booted.groups()[0:2] == ("node7", "10.77.0.17/24") and booted.group(6) == "eth0"


def test_two_nics_install_over_the_second(install_lab, hosts):
    """UEFI with two NICs, only the second on the install network: the installer takes the NIC the
    firmware booted from (BOOTIF), and the installed system configures that one (eth1)."""
    lab = install_lab
    node = lab.machine("node8", "52:54:00:77:00:18", firmware="uefi", other_nics=("52:54:00:77:01:18",))
    try:
        run, booted = installed_and_booted(lab, node)
    finally:
        node.guest.stop()
    assert "network-booted from eth1 (52:54:00:77:00:18)" in run["log"], run["log"][-2000:]
    assert "configuring eth1" in run["log"], run["log"][-2000:]
    assert booted.groups()[0:2] == ("node8", "10.77.0.18/24") and booted.group(6) == "eth1"


def test_uefi_http_boot(install_lab, hosts):
    """OVMF's own HTTP boot (no PXE, so no TFTP at all): DHCP answers the HTTPClient with a URL,
    the firmware fetches ipxe.efi over HTTP and the install runs from there."""
    lab = install_lab
    node = lab.machine("node9", "52:54:00:77:00:19", firmware="uefi", netboot="http")
    run, booted, console = install_then_stop(lab, node)
    assert "Start HTTP Boot over IPv4" in console and "Start PXE over" not in console, console[-3000:]
    assert "URI: http://10.77.0.1:8080/boot/ipxe.efi" in console, console[-3000:]
    assert booted.groups()[0:2] == ("node9", "10.77.0.19/24") and booted.group(4) == "uefi"

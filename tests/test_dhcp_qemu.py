"""Real PXE firmware against our DHCP: QEMU's iPXE ROM (SeaBIOS) in a lab namespace."""
from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from appliance.lab.netns import Lab
from appliance.lab.qemu import UEFI_NETBOOT_RNG, efi_virtio_rom, ovmf_code
from support.dhcp_lab import Appliance




def boot_until_filename(tmp_path: Path, machine: list[str], dhcp: dict | None = None,
                        other_server: bool = False) -> tuple[str, Appliance]:
    """Boot QEMU on a lab bridge with our appliance (and maybe dnsmasq); return its console."""
    with Lab() as lab:
        sw = lab.namespace("qsw")
        lab.bridge(sw, "br0")
        srv = lab.namespace("qsrv")
        lab.veth(srv, "eth0", sw, "p-srv", addr_a="10.77.0.1/24", bridge_b="br0")
        lab.tap(sw, "tap0", "br0")
        lab.names = {"srv": srv}
        if other_server:
            other = lab.namespace("qdns")
            lab.veth(other, "eth0", sw, "p-dns", addr_a="10.77.0.3/24", bridge_b="br0")
            lab.popen(other, "dnsmasq", "--no-daemon", "--port=0", "--interface=eth0", "--bind-interfaces",
                      "--no-ping", "--dhcp-range=10.77.0.20,10.77.0.30,1h", "--conf-file=/dev/null",
                      f"--dhcp-leasefile={tmp_path}/dnsmasq.leases", f"--pid-file={tmp_path}/dnsmasq.pid",
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        appliance = Appliance(lab, tmp_path / "state", dhcp=dhcp).start()
        console = tmp_path / "console.txt"
        with open(console, "wb") as out:
            lab.popen(sw, "qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nographic",
                      "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no", *machine,
                      stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            deadline = time.time() + 120
            text = ""
            while time.time() < deadline:
                text = console.read_bytes().decode("latin-1")
                if "Filename:" in text and ".ipxe" in text.split("Filename:")[1]:
                    break
                time.sleep(0.5)
        appliance.stop()
    return text, appliance


def test_qemu_ipxe_rom_with_proxy_dhcp(tmp_path):
    """Another server (dnsmasq) assigns the address; ours, in proxy mode, the boot file."""
    if not shutil.which("qemu-system-x86_64") or not shutil.which("dnsmasq"):
        pytest.fail("qemu-system-x86_64 and dnsmasq (packages qemu-system-x86, dnsmasq-base) are needed")
    machine = ["-boot", "n", "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56"]
    text, appliance = boot_until_filename(tmp_path, machine, dhcp={"mode": "proxy"}, other_server=True)
    assert re.search(r"net0: 10\.77\.0\.(2\d|30)/255\.255\.255\.0", text), text[-2000:]
    assert "Filename: http://10.77.0.1:8080/boot/ipxe/01-52-54-00-12-34-56.ipxe" in text, text[-2000:]
    assert appliance.store().leases() == []          # proxy mode assigns nothing


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_qemu_ipxe_rom_gets_address_and_script(tmp_path, firmware):
    if not shutil.which("qemu-system-x86_64"):
        pytest.fail("qemu-system-x86_64 (package qemu-system-x86, with ipxe-qemu) is needed")
    if firmware == "bios":
        machine = ["-boot", "n", "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56"]
    else:
        machine = ["-drive", f"if=pflash,format=raw,readonly=on,file={ovmf_code()}", *UEFI_NETBOOT_RNG,
                   "-device", f"virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,romfile={efi_virtio_rom()}"]
    text, appliance = boot_until_filename(tmp_path, machine)
    assert "Filename: http://10.77.0.1:8080/boot/ipxe/01-52-54-00-12-34-56.ipxe" in text, text[-2000:]
    assert re.search(r"net0: 10\.77\.0\.1\d\d/255\.255\.255\.0 gw 10\.77\.0\.1", text), text[-2000:]
    assert "Next server: 10.77.0.1" in text
    leases = {l.mac: l.ip for l in appliance.store().leases()}
    assert leases.get("52:54:00:12:34:56", "").startswith("10.77.0.1")

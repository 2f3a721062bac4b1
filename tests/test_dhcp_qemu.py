"""Real PXE firmware against our DHCP: QEMU's iPXE ROM (SeaBIOS) in a lab namespace."""
from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from appliance.lab.netns import Lab
from dhcp_lab import Appliance


OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE.fd")


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_qemu_ipxe_rom_gets_address_and_script(tmp_path, firmware):
    if not shutil.which("qemu-system-x86_64"):
        pytest.fail("qemu-system-x86_64 (package qemu-system-x86, with ipxe-qemu) is needed")
    if firmware == "bios":
        machine = ["-boot", "n", "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56"]
    else:
        if not OVMF_CODE.exists():
            pytest.fail(f"{OVMF_CODE} (package ovmf) is needed for the UEFI case")
        machine = ["-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
                   "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,"
                              "romfile=/usr/lib/ipxe/qemu/efi-virtio.rom"]
    with Lab() as lab:
        sw = lab.namespace("qsw")
        lab.bridge(sw, "br0")
        srv = lab.namespace("qsrv")
        lab.veth(srv, "eth0", sw, "p-srv", addr_a="10.77.0.1/24", bridge_b="br0")
        lab.tap(sw, "tap0", "br0")
        lab.names = {"srv": srv}
        appliance = Appliance(lab, tmp_path / "state").start()
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
    assert "Filename: http://10.77.0.1:8080/boot/ipxe/01-52-54-00-12-34-56.ipxe" in text, text[-2000:]
    assert re.search(r"net0: 10\.77\.0\.1\d\d/255\.255\.255\.0 gw 10\.77\.0\.1", text), text[-2000:]
    assert "Next server: 10.77.0.1" in text
    leases = {l.mac: l.ip for l in appliance.store().leases()}
    assert leases.get("52:54:00:12:34:56", "").startswith("10.77.0.1")

"""A QEMU BIOS guest (SeaBIOS + iPXE ROM) loads pxelinux from our TFTP server.

Inside a namespace: a bridge with the server address, a tap for the guest,
dnsmasq for DHCP only (--port=0, no TFTP) pointing at pxelinux.0, and our
server (services.tftp.server) for every file. The guest's firmware TFTP client
fetches pxelinux.0, pxelinux fetches ldlinux.c32 and pxelinux.cfg/default and the
message file it names; the serial console shows pxelinux's prompt, our log each transfer.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from appliance.lab.netns import Lab

REPO = Path(__file__).resolve().parent.parent
PXELINUX = Path("/usr/lib/PXELINUX/pxelinux.0")
LDLINUX = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")


def test_bios_guest_boots_pxelinux_over_our_tftp(tmp_path):
    for path, package in ((PXELINUX, "pxelinux"), (LDLINUX, "syslinux-common")):
        assert path.exists(), f"{path} missing (Debian package {package})"
    for tool, package in (("qemu-system-x86_64", "qemu-system-x86"), ("dnsmasq", "dnsmasq-base")):
        assert shutil.which(tool), f"{tool} missing (Debian package {package})"
    root = tmp_path / "boot"
    (root / "pxelinux.cfg").mkdir(parents=True)
    shutil.copy(PXELINUX, root / "pxelinux.0")
    shutil.copy(LDLINUX, root / "ldlinux.c32")
    # DISPLAY makes pxelinux fetch one more file, named by the config it fetched, over TFTP. (Its
    # text, like SAY's, never reached the serial log here: the serial shows the loader's own
    # lines only, so the TFTP log below is what tells the file came.)
    (root / "hello.msg").write_text("hello\n")
    (root / "pxelinux.cfg" / "default").write_text("SERIAL 0 115200\nDISPLAY hello.msg\nPROMPT 1\nTIMEOUT 0\n")
    serial = tmp_path / "serial.log"
    with Lab() as lab:
        ns = lab.namespace("pxe")
        lab.bridge(ns, "br0", "10.79.0.1/24")
        lab.tap(ns, "tap0", "br0")
        lab.popen(ns, "dnsmasq", "-d", "--port=0", "--conf-file=/dev/null", "--interface=br0",
                  "--bind-interfaces", "--dhcp-range=10.79.0.50,10.79.0.60,1h", "--dhcp-boot=pxelinux.0,,10.79.0.1",
                  f"--pid-file={tmp_path / 'dnsmasq.pid'}", f"--dhcp-leasefile={tmp_path / 'leases'}",
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server_log = open(tmp_path / "tftp.log", "w")
        lab.popen(ns, sys.executable, "-m", "services.tftp.server", str(root), "--address", "10.79.0.1",
                  "--port", "69", "--verbose", cwd=str(REPO), stdout=server_log, stderr=subprocess.STDOUT)
        qemu = lab.popen(ns, "qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-display", "none",
                         "-serial", f"file:{serial}", "-boot", "n", "-no-reboot",
                         "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
                         "-device", "virtio-net-pci,netdev=n0",
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        seen = ""
        while time.time() < deadline:
            seen = serial.read_text(errors="replace") if serial.exists() else ""
            if "boot:" in seen or qemu.poll() is not None:
                break
            time.sleep(0.5)
        time.sleep(1)
        qemu.kill()
        qemu.wait()
    log = (tmp_path / "tftp.log").read_text(errors="replace")
    assert "PXELINUX" in seen and "boot:" in seen, f"pxelinux did not start; serial:\n{seen[-2000:]}\n{log[-3000:]}"
    # pxelinux.0 came from the ROM's TFTP client, the rest from pxelinux's own (which asks the
    # per-host names first and gets ERROR 1 for each), and every transfer completed.
    for name in ("pxelinux.0", "ldlinux.c32", "pxelinux.cfg/01-52-54-00-12-34-56", "pxelinux.cfg/default",
                 "hello.msg"):
        assert f"'{name}'" in log, f"no request for {name}:\n{log[-3000:]}"
    assert log.count(" complete, ") >= 4, log[-3000:]
    assert " failed" not in log and "timeout" not in log, log[-3000:]

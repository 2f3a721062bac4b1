"""The whole appliance (`si up`: our DHCP, TFTP, HTTP, DNS) PXE-boots a BIOS guest.

In a lab namespace, with dhcp.loader = "pxelinux": the iPXE ROM gets pxelinux.0
from our DHCP, loads it and ldlinux.c32 (laid out by si up) over our TFTP, reads
the pxelinux config our provider renders on request for its MAC, and loads
kernel and initrd by '::' paths. With "ipxe": our DHCP sends the ROM to its
per-MAC iPXE script on our HTTP, which fetches kernel and initrd over HTTP. ipxe.lkrn stands in for the autoinstall kernel
and prints its command line as unknown commands. DNS then answers for the host.
dnsmasq runs only to send IPv6 router advertisements (RA-only, no DHCP, no DNS):
without one the iPXE ROM waits ~13 s in IPv6 autoconfiguration.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.lab.netns import Lab
from appliance.lab.qemu import ipxe_lkrn
from appliance.store import Store
from appliance.store.records import Host

REPO = Path(__file__).resolve().parent.parent
MAC, HOST_IP = "52:54:00:5e:00:04", "10.77.0.44"


@pytest.mark.parametrize("loader", ["pxelinux", "ipxe"])
def test_si_up_boot_and_dns(tmp_path, loader):
    for tool, package in (("qemu-system-x86_64", "qemu-system-x86"), ("dnsmasq", "dnsmasq-base"),
                          ("dig", "bind9-dnsutils")):
        assert shutil.which(tool), f"{tool} is missing: apt-get install {package}"
    boot = tmp_path / "tftpboot"
    (boot / "systemimager").mkdir(parents=True)
    shutil.copy(ipxe_lkrn(), boot / "systemimager/kernel")
    (boot / "systemimager/initrd.img").write_bytes(b"\0" * 4096)
    store = Store(tmp_path / "appliance.db")
    store.upsert_host(Host("www3", mac=MAC, ip=HOST_IP, image="web", console="ttyS0,115200n8"))
    store.close()
    config = tmp_path / "appliance.toml"
    config.write_text(f'''interface = "br0"
address = "10.77.0.1"
domain = "lab.test"
state_dir = "{tmp_path}"
log_dir = "{tmp_path}/log"
[services]
rsyncd = false
[[subnet]]
network = "10.77.0.0/24"
pools = ["10.77.0.100-10.77.0.199"]
gateway = "10.77.0.1"
dns_servers = ["10.77.0.1"]
[dhcp]
probe_seconds = 0
loader = "{loader}"
''')
    serial, up_log = tmp_path / "serial.log", tmp_path / "up.log"
    serial.write_text("")
    with Lab() as lab:
        ns = lab.namespace("bootcfg-up")
        lab.bridge(ns, "br0", "10.77.0.1/24")
        lab.run(ns, "ip", "-6", "addr", "add", "fd77::1/64", "dev", "br0", "nodad")
        lab.tap(ns, "tap0", "br0")
        (tmp_path / "ra.conf").write_text("")
        lab.popen(ns, "dnsmasq", "--no-daemon", "--port=0", f"--conf-file={tmp_path}/ra.conf",
                  "--interface=br0", "--bind-interfaces", "--enable-ra", "--dhcp-range=fd77::,ra-only",
                  f"--pid-file={tmp_path}/ra.pid", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        up = lab.popen(ns, sys.executable, "-m", "appliance.cli", "up", "--config", str(config),
                       stdout=open(up_log, "w"), stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.time() + 20
        while time.time() < deadline and "serving;" not in up_log.read_text():
            assert up.poll() is None, f"si up exited: {up_log.read_text()[-2000:]}"
            time.sleep(0.2)
        assert "serving;" in up_log.read_text(), up_log.read_text()[-2000:]
        assert (boot / "pxelinux.0").is_file() and (boot / "ldlinux.c32").is_file()   # laid out by si up

        qemu = lab.popen(ns, "qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nographic",
                         "-boot", "n", "-no-reboot", "-monitor", "none",
                         "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
                         "-device", f"virtio-net-pci,netdev=n0,mac={MAC}", "-serial", f"file:{serial}",
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        marker = "IMAGESERVER=10.77.0.1: command not found"
        deadline = time.time() + 45
        while time.time() < deadline and marker not in serial.read_text(errors="replace"):
            time.sleep(0.25)
        qemu.kill()
        qemu.wait()
        log = serial.read_text(errors="replace").replace("\r", "")
        assert f"net0: {HOST_IP}/255.255.255.0" in log, log[-2000:]       # our DHCP, fixed address
        if loader == "pxelinux":
            assert "Filename: pxelinux.0" in log and "PXELINUX" in log, log[-2000:]
            assert "Loading ::systemimager/kernel" in log, log[-2000:]
        else:   # the iPXE ROM is sent straight to its per-MAC script over HTTP
            script = f"http://10.77.0.1:8080/boot/ipxe/01-{MAC.replace(':', '-')}.ipxe"
            assert f"Filename: {script}" in log, log[-2000:]
            assert "SystemImager: autoinstalling www3 with image web" in log, log[-2000:]
            assert "http://10.77.0.1:8080/boot/systemimager/kernel... ok" in log, log[-2000:]
        assert marker in log, log[-2000:]

        def dig(*args: str) -> str:
            return lab.run(ns, "dig", "@10.77.0.1", "+short", "+tries=1", "+time=2", *args).stdout.strip()
        assert dig("www3.lab.test") == HOST_IP
        assert dig("-x", HOST_IP) == "www3.lab.test."
        assert dig("lab.test", "SOA").startswith("lab.test. hostmaster.lab.test.")

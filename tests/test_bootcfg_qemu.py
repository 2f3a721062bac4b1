"""A SeaBIOS guest with the iPXE ROM boots through our rendered iPXE scripts.

Inside a lab namespace: a bridge with the appliance address, dnsmasq with DNS
off (--port=0) standing in for our DHCP and TFTP servers, whose boot file is
the per-MAC script URL of our HTTP (appliance.http.build_app + the bootconfig
provider), and QEMU -boot n on a tap.

- An unknown MAC gets the local-boot script: iPXE runs `exit` and SeaBIOS goes
  on to its other boot devices.
- A host whose DHCP boot file is pxelinux.0 (TFTP from dnsmasq, a stand-in)
  reads the rendered pxelinux config and loads kernel and initrd by '::' paths.
- A host marked for install with a serial console gets the autoinstall entry:
  iPXE fetches systemimager/kernel and initrd.img over HTTP and boots them.
  Debian's ipxe.lkrn stands in for the autoinstall kernel (built elsewhere by
  `si mkbootimage`): it is a bzImage that runs its kernel command line as
  commands, so the serial log shows our command line arriving in the kernel.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ipaddress import IPv4Address

from appliance.bootconfig import boot_file, lay_out
from services import bootloaders
from appliance.config import Config, HttpConfig
from appliance.lab.netns import Lab
from appliance.lab.qemu import efi_virtio_rom, ipxe_lkrn
from appliance.store import Store
from appliance.store.records import Host
from services.debian_packages import require

REPO = Path(__file__).resolve().parent.parent
SERVER, PORT = "10.77.0.1", 8080
INSTALL_MAC, UNKNOWN_MAC = "52:54:00:5e:00:02", "52:54:00:5e:00:99"
PXELINUX_MAC = "52:54:00:5e:00:03"     # boots pxelinux.0 over TFTP instead of an iPXE script
# Cursor moves SeaBIOS mirrors from the screen can land inside a line of text.
TERMINAL_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[c78]")


@pytest.fixture(scope="module")
def lab_boot(tmp_path_factory):
    require("qemu-system-x86_64", "dnsmasq")
    efi_virtio_rom()
    stand_in_kernel = ipxe_lkrn()
    state = tmp_path_factory.mktemp("bootcfg-lab")
    boot = state / "tftpboot"
    lay_out(boot, needed=bootloaders.needed("ipxe", "ipxe"))
    (boot / "systemimager").mkdir()
    shutil.copy(stand_in_kernel, boot / "systemimager/kernel")
    (boot / "systemimager/initrd.img").write_bytes(b"\0" * 4096)
    store = Store(state / "appliance.db")
    store.upsert_host(Host("www1", mac=INSTALL_MAC, image="web", console="ttyS0,115200n8"))
    store.upsert_host(Host("www2", mac=PXELINUX_MAC, image="web", console="ttyS0,115200n8"))
    # dnsmasq's TFTP stands in for ours (another part): the per-host pxelinux config
    # is rendered by the provider and written where pxelinux will ask for it.
    cfg = Config(interface="br0", address=IPv4Address(SERVER), state_dir=state, http=HttpConfig(port=PORT))
    name = "pxelinux.cfg/01-" + PXELINUX_MAC.replace(":", "-")
    (boot / "pxelinux.cfg").mkdir()
    (boot / name).write_bytes(boot_file(store, cfg, name, ""))
    store.close()
    access = state / "access.log"
    access.write_text("")
    with Lab() as lab:
        ns = lab.namespace("bootcfg")
        lab.bridge(ns, "br0", f"{SERVER}/24")
        lab.run(ns, "ip", "-6", "addr", "add", "fd77::1/64", "dev", "br0", "nodad")
        http = lab.popen(ns, sys.executable, str(REPO / "tests/support/bootcfg_http_server.py"),
                         str(state), SERVER, str(PORT), str(access),
                         stdout=subprocess.PIPE, cwd=REPO)
        assert http.stdout.readline().strip() == b"ready", "appliance HTTP did not start"
        (state / "dnsmasq.conf").write_text("")   # never the system's dnsmasq config
        dnsmasq = lab.popen(
            ns, "dnsmasq", "--no-daemon", "--port=0", f"--conf-file={state}/dnsmasq.conf", "--interface=br0",
            "--bind-interfaces", "--log-dhcp", "--dhcp-range=10.77.0.100,10.77.0.150,255.255.255.0,1h",
            f"--dhcp-host={PXELINUX_MAC},set:pxelinux", "--dhcp-boot=tag:pxelinux,pxelinux.0",
            "--enable-tftp", f"--tftp-root={boot}",
            # iPXE expands ${mac:hexhyp} itself: the same URL our DHCP server hands out.
            f"--dhcp-boot=tag:!pxelinux,http://{SERVER}:{PORT}/boot/ipxe/01-${{mac:hexhyp}}.ipxe",
            # A router advertisement ends iPXE's IPv6 autoconfiguration, which
            # otherwise holds "Configuring" for ~13 s.
            "--enable-ra", "--dhcp-range=fd77::,ra-only",
            f"--dhcp-leasefile={state}/dnsmasq.leases", f"--pid-file={state}/dnsmasq.pid",
            stdout=subprocess.DEVNULL, stderr=open(state / "dnsmasq.log", "w"))
        time.sleep(0.3)
        assert dnsmasq.poll() is None, \
            f"dnsmasq (DHCP-only stand-in) did not start: {(state / 'dnsmasq.log').read_text()}"
        yield lab, ns, state, access


def boot_guest(lab, ns, state: Path, mac: str, tap: str, until: str, timeout: float = 45.0) -> str:
    """Run a BIOS guest until `until` shows on its serial console; returns the log."""
    lab.tap(ns, tap, "br0")
    serial = state / f"serial-{tap}.log"
    serial.write_text("")
    qemu = lab.popen(ns, "qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nographic",
                     "-boot", "n", "-no-reboot", "-monitor", "none",
                     "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
                     "-device", f"virtio-net-pci,netdev=n0,mac={mac}",
                     "-serial", f"file:{serial}",
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and qemu.poll() is None:
            if until in serial.read_text(errors="replace"):
                break
            time.sleep(0.25)
    finally:
        qemu.kill()
        qemu.wait()
    return TERMINAL_ESCAPES.sub("", serial.read_text(errors="replace").replace("\r", ""))


def test_unknown_machine_gets_local_boot(lab_boot):
    lab, ns, state, access = lab_boot
    log = boot_guest(lab, ns, state, UNKNOWN_MAC, "tap1", "No bootable device")
    script = f"/boot/ipxe/01-{UNKNOWN_MAC.replace(':', '-')}.ipxe"
    assert f"GET {script} 200" in access.read_text()
    assert "SystemImager: unknown machine: boot the local disk" in log
    after = log.split("SystemImager: unknown machine", 1)[1]
    assert "Booting from Hard Disk" in after and "No bootable device" in after, log[-1500:]
    assert "/boot/systemimager/kernel" not in access.read_text()


def test_install_host_boots_kernel_with_our_command_line(lab_boot):
    lab, ns, state, access = lab_boot
    marker = f"IMAGESERVER={SERVER}: command not found"
    log = boot_guest(lab, ns, state, INSTALL_MAC, "tap2", marker)
    requests = access.read_text()
    assert f"GET /boot/ipxe/01-{INSTALL_MAC.replace(':', '-')}.ipxe 200" in requests
    assert "GET /boot/systemimager/kernel 200" in requests
    assert "GET /boot/systemimager/initrd.img 200" in requests
    assert "SystemImager: autoinstalling www1 with image web" in log
    # The stand-in kernel started (a second iPXE banner) and got our command line.
    assert log.count("Open Source Network Boot Firmware") >= 2, log[-1500:]
    assert marker in log, log[-1500:]


def test_pxelinux_boots_the_rendered_config(lab_boot):
    """pxelinux.0 + ldlinux.c32 from the mkbootserver layout read our rendered config
    and load the kernel by its '::' root path with our command line."""
    lab, ns, state, access = lab_boot
    marker = f"IMAGESERVER={SERVER}: command not found"
    log = boot_guest(lab, ns, state, PXELINUX_MAC, "tap3", marker)
    assert "PXELINUX" in log, log[-1500:]
    assert marker in log, log[-1500:]
    # The config's SERIAL 0 115200 (host console ttyS0,115200n8): after reading it
    # pxelinux writes to COM1 itself besides the screen SeaBIOS mirrors, so its
    # messages from then on appear twice.
    # The two copies are written character by character and may interleave
    # ("ookk"), so count characters rather than whole lines.
    start = log.index("Loading ::")
    loading = log[start:log.index("iPXE initialising", start)]   # up to the stand-in kernel
    phrase = "Loading ::systemimager/kernel..."
    assert all(loading.count(c) >= 2 * phrase.count(c) for c in set(phrase)), log[-1500:]

"""A whole install network in namespaces: appliance, golden client, QEMU machines.

Used by the README's demo and by the end-to-end tests in vm-tests/. Every step
goes through the real `si` commands and the real `si up` process, the way an
operator would run them.
"""
from __future__ import annotations

import re
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from .appliance_ns import SI, Appliance, start_appliance
from .golden import golden_disk
from .golden_debian import debian_golden_disk
from .netns import Lab, run_checked
from .qemu import Guest, make_disk

GOLDEN_IP = "10.77.0.2"
SICLIENT = str(Path(__file__).resolve().parents[1] / "client" / "siclient.py")
APPLIANCE_IP = "10.77.0.1"


@dataclass
class Machine:
    hostname: str
    mac: str
    guest: Guest


@dataclass
class InstallLab:
    lab: Lab
    workdir: Path
    loader: str = "ipxe"
    uefi_loader: str = "shim"
    golden: str = "small"      # "small": golden.py's busybox system; "debian": golden_debian.py's
    fleet: dict | None = None  # the appliance's [fleet] table (transports per image or group)
    dhcp: dict | None = None   # more of the appliance's [dhcp] table (e.g. in_order)
    appliance: Appliance | None = None
    golden_ns: str | None = None
    golden_root: Path | None = None    # the golden client's mounted root (change it, capture again)
    other_bridge: str | None = None    # a network without DHCP, for machines' other NICs
    timings: dict[str, float] = field(default_factory=dict)
    _stack: ExitStack = field(default_factory=ExitStack)

    # --- the appliance ---------------------------------------------------
    def up(self) -> dict:
        t = time.time()
        self.appliance = start_appliance(self.lab, self.workdir, loader=self.loader,
                                         uefi_loader=self.uefi_loader, fleet=self.fleet, dhcp=self.dhcp)
        # Outside the namespaces: building the boot image may download Debian
        # packages, and the lab's namespaces have no route to a mirror.
        run_checked([*SI, "mkbootimage", "--config", str(self.appliance.config)], timeout=900)
        self.appliance.si("mkbootserver")
        health = self.appliance.start()
        self.timings["appliance up"] = time.time() - t
        return health

    def si(self, *args: str, **kw):
        return self.appliance.si(*args, **kw)

    def api(self, path: str):
        return self.appliance.get(path)

    # --- the golden client and its image ---------------------------------
    def prepare_golden(self) -> str:
        """The golden client on its own disk and namespace, running prepareclient."""
        t = time.time()
        if self.golden == "debian":
            disk = debian_golden_disk(self.workdir / "golden", timings=self.timings)
        elif self.golden == "small":
            disk = golden_disk(self.workdir / "golden")
        else:
            raise ValueError(f"golden must be 'small' or 'debian', not {self.golden!r}")
        golden = self._stack.enter_context(disk)
        self.golden_root = golden.root
        self.golden_ns = self.lab.namespace("golden")
        self.lab.veth(self.golden_ns, "eth0", self.appliance.ns, "vgolden", addr_a=f"{GOLDEN_IP}/24",
                      bridge_b="br0")
        run_dir = self.workdir / "prepareclient"
        out = self.lab.run(self.golden_ns, sys.executable, SICLIENT, "prepareclient",
                           "--server", APPLIANCE_IP, "--root", str(golden.root), "--disk", golden.device,
                           "--address", GOLDEN_IP, "--run-dir", str(run_dir), "--yes", timeout=120)
        self._stack.callback(self.lab.run, self.golden_ns, sys.executable, SICLIENT, "prepareclient",
                             "--stop", "--run-dir", str(run_dir), check=False)
        self.golden_secret = re.search(r"One-time secret: (\S+)", out.stdout).group(1)
        self.timings["prepareclient"] = time.time() - t
        return self.golden_secret

    def capture(self, image: str, *, ip_assignment: str = "static_dhcp", post_install: str = "reboot") -> dict:
        """getimage from the golden client (prepared on first use)."""
        if self.golden_ns is None:
            self.prepare_golden()
        t = time.time()
        self.si("getimage", "--golden-client", GOLDEN_IP, "--image", image, "--secret", self.golden_secret,
                "--ip-assignment", ip_assignment, "--post-install", post_install, "--yes", "--no-progress",
                timeout=600)
        self.timings[f"getimage {image}"] = time.time() - t
        return next(i for i in self.api("/api/images") if i["name"] == image)

    def addclients(self, image: str, basename: str, count: int, start: int = 1) -> list[str]:
        """Hosts <basename><start>... at 10.77.0.(10 + number), installing `image`."""
        first, last = f"10.77.0.{10 + start}", f"10.77.0.{10 + start + count - 1}"
        self.si("addclients", "--basename", basename, "--start", str(start), "--end", str(start + count - 1),
                "--image", image, "--ip-range", f"{first}-{last}", "--etc-hosts", str(self.workdir / "etc-hosts"),
                "--yes")
        return [f"{basename}{i}" for i in range(start, start + count)]

    def close(self) -> None:
        self._stack.close()

    # --- machines ----------------------------------------------------------
    def machine(self, hostname: str, mac: str, *, firmware: str = "bios", disk_size: str = "1G",
                memory_mb: int = 1024, enrol: bool = True, cdrom: Path | None = None,
                boot: tuple[str, ...] = ("net", "disk"), nic_model: str = "virtio-net-pci",
                other_nics: tuple[str, ...] = (), netboot: str = "pxe") -> Machine:
        """A QEMU machine on the install network; enrol=True records its MAC for hostname.

        other_nics: MACs of NICs ahead of the install one, cabled to a network with no
        DHCP or appliance on it (a cluster's other network)."""
        if enrol:  # serial console: the lab reads every machine's console
            self.si("hosts", "set", hostname, "--mac", mac, "--console", "ttyS0,115200n8")
        if other_nics and self.other_bridge is None:
            self.other_bridge = self.lab.bridge(self.appliance.ns, "br-other")
        disk = make_disk(self.workdir / f"{hostname}.disk.raw", disk_size)
        guest = Guest(self.lab, self.appliance.ns, hostname, "br0", mac, self.workdir,
                      firmware=firmware, disk=disk, memory_mb=memory_mb, cdrom=cdrom, boot=boot,
                      nic_model=nic_model, other_nics=tuple((self.other_bridge, m) for m in other_nics),
                      netboot=netboot)
        return Machine(hostname, mac, guest)

    def install_state(self, hostname: str) -> dict | None:
        """The host's newest run with its whole log (None before it has one)."""
        run = self.api(f"/api/installs/{hostname}")
        return run if run and "id" in run else None

    def wait_installed(self, hostname: str, timeout: float) -> dict:
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            last = self.install_state(hostname)
            if last and last["state"] == "succeeded":
                return last
            if last and last["state"] == "failed":
                raise AssertionError(f"{hostname}: install failed: {last['log'][-2000:]}")
            time.sleep(1)
        raise AssertionError(f"{hostname}: not installed within {timeout:.0f}s; last state {last}")

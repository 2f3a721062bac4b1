"""Many machines installing one image at once, in namespaces: `si up` (HTTP, the rsync
daemon, the fleet) behind one switch, each machine on its own port, each running the image
pull of the rendered master script under busybox sh (the functions the initrd runs) into a
directory of its own. Used by the fleet tests and bench/fleet.py.

The switch is a namespace holding only a bridge, so the appliance has one cable like the
machines: shaping every cable (both ends, `tc tbf`) models a switch of links of that speed,
the appliance's included, which is what makes N unicast installs take N times one.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.autoinstall import write_master_script
from appliance.config import load
from appliance.store import Store
from appliance.store.records import Host

from .appliance_ns import Appliance
from .configs import lab_toml
from .netns import Lab
from .script_stubs import write_stubs

SERVER = "10.77.0.1"
ENGINES = ("busybox", "rsync", "curl", "tar", "zstd", "mktorrent", "opentracker", "aria2c", "ctorrent",
           "udp-sender", "udp-receiver")



def machine_ip(index: int) -> str:
    return f"10.77.0.{50 + index}"


@dataclass
class Pull:
    """One machine's image pull: its exit code, output, log and when the image was in place
    (seconds on the boot clock, as /proc/uptime gives it; None if it never was)."""
    index: int
    rc: int
    out: str
    log: str
    target: Path
    pulled_at: float | None
    phases: dict[str, float]     # when each progress phase was first seen (finish(stop_when_pulled))


class FleetLab:
    """The appliance and `hosts` installing machines on one switch; close() via the Lab."""

    def __init__(self, lab: Lab, workdir: Path, image_root: Path, *, image: str = "fleetimg",
                 hosts: int, fleet: dict, link_mbit: int | None = None) -> None:
        self.lab, self.workdir, self.image_root, self.image = lab, workdir, image_root, image
        self.switch = lab.namespace("sw")
        lab.bridge(self.switch, "br0")
        self.app = lab.namespace("app")
        lab.veth(self.app, "eth0", self.switch, "p0", addr_a=f"{SERVER}/24", bridge_b="br0")
        self.cables = [(self.app, "eth0"), (self.switch, "p0")]
        self.machines = []
        for i in range(hosts):
            ns = lab.namespace(f"m{i}")
            lab.veth(ns, "eth0", self.switch, f"p{i + 1}", addr_a=f"{machine_ip(i)}/24", bridge_b="br0")
            self.machines.append(ns)
            self.cables += [(ns, "eth0"), (self.switch, f"p{i + 1}")]
        if link_mbit:
            for ns, ifname in self.cables:
                lab.run(ns, "tc", "qdisc", "add", "dev", ifname, "root", "tbf", "rate", f"{link_mbit}mbit",
                        "burst", "32kbit", "latency", "50ms")
        self.config = workdir / "appliance.toml"
        self.config.write_text(lab_toml(workdir, interface="eth0", services=("http", "rsyncd", "fleet"),
                                        fleet=fleet))
        cfg = load(self.config)
        store = Store(cfg.db_path)
        store.add_image_version(image, 1, str(image_root), ip_method="static_dhcp", post_install="reboot")
        store.finish_image_version(image, 1, 1)
        for i in range(hosts):
            store.upsert_host(Host(f"node{i}", ip=machine_ip(i), image=image))
        self.master = write_master_script(cfg, store, image)
        self.stubs = write_stubs(workdir / "stubs")
        self.appliance = Appliance(lab, self.app, self.config, workdir)
        self.appliance.start()

    @property
    def proc(self) -> subprocess.Popen:
        return self.appliance.proc

    def api(self, path: str):
        return self.appliance.get(path)

    def wait_for(self, ready, what: str, seconds: float) -> None:
        deadline = time.time() + seconds
        while not ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"si up exited: {self.appliance.log_path.read_text()[-2000:]}")
            if time.time() > deadline:
                raise TimeoutError(what)
            time.sleep(0.2)

    def packed(self, seconds: float = 60) -> dict:
        """Wait until the image's stream is ready; its pack entry from /api/fleet."""
        def ready():
            return next((p for p in (self.api("/api/fleet") or {}).get("packs", [])
                         if p["image"] == self.image and p["state"] == "ready"), None)
        self.wait_for(ready, f"no pack of {self.image} became ready: {self.api('/api/fleet')}", seconds)
        return ready()

    def tx_bytes(self) -> int:
        """Bytes the appliance has sent on its one cable."""
        out = self.lab.run(self.app, "cat", "/sys/class/net/eth0/statistics/tx_bytes")
        return int(out.stdout)

    def start(self, indexes, extra_env: dict | None = None) -> list[tuple[int, subprocess.Popen]]:
        """Start the pull of every listed machine at once (each its own process group)."""
        procs = []
        for i in indexes:
            target, work = self.workdir / f"target{i}", self.workdir / f"si-tmp{i}"
            target.mkdir(exist_ok=True)
            work.mkdir(exist_ok=True)
            (work / "pulled").unlink(missing_ok=True)
            for record in ("", ".log", ".http"):     # each pull's own calls and log
                (self.workdir / f"calls{i}{record}").unlink(missing_ok=True)
            env = dict(os.environ, PATH=f"{self.stubs}:/usr/sbin:/usr/bin:/sbin:/bin",
                       CALLS=str(self.workdir / f"calls{i}"), IMAGESERVER=SERVER, SI_HTTP_PORT="8080",
                       HOSTNAME=f"node{i}", DEVICE="eth0", TARGET=str(target), SI_TMP=str(work),
                       SI_FUNCTIONS_ONLY="1", **(extra_env or {}))
            script = (f'. {self.master} && pull_image && cut -d" " -f1 /proc/uptime >"$SI_TMP/pulled" '
                      '&& stop_seeding')
            procs.append((i, self.lab.popen(self.machines[i], "busybox", "sh", "-c", script, env=env,
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                            start_new_session=True)))
        return procs

    def finish(self, procs, timeout: float = 120, stop_when_pulled: bool = False) -> list[Pull]:
        """Each machine's Pull once all have ended; stop_when_pulled ends them (and their
        seeding) as soon as every one has the image in place."""
        deadline = time.time() + timeout
        phases: dict[int, dict[str, float]] = {i: {} for i, _ in procs}
        if stop_when_pulled:
            while time.time() < deadline and not all(
                    proc.poll() is not None or (self.workdir / f"si-tmp{i}/pulled").exists() for i, proc in procs):
                now = boot_clock()
                for i, _ in procs:
                    calls = self.workdir / f"calls{i}"
                    for line in calls.read_text().splitlines() if calls.exists() else ():
                        if line.startswith("si-progress "):
                            phases[i].setdefault(line.split()[1], now)
                time.sleep(0.1)
            for _, proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
        results = []
        for i, proc in procs:
            try:
                out, _ = proc.communicate(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, _ = proc.communicate()
            log = self.workdir / f"calls{i}.log"
            pulled = self.workdir / f"si-tmp{i}/pulled"
            results.append(Pull(i, proc.returncode, out, log.read_text() if log.exists() else "",
                                self.workdir / f"target{i}",
                                float(pulled.read_text()) if pulled.exists() else None, phases[i]))
        return results

    def install(self, indexes, extra_env: dict | None = None, timeout: float = 120) -> list[Pull]:
        return self.finish(self.start(indexes, extra_env), timeout)

    def differences(self, target: Path) -> list[str]:
        """What rsync would still change to make `target` the image (nothing, when exact)."""
        diff = subprocess.run(["rsync", "-naHAXc", "--numeric-ids", "--delete", "--itemize-changes",
                               "--exclude=/.si-stream",     # a machine ended while it seeded keeps it
                               f"{self.image_root}/", f"{target}/"], capture_output=True, text=True, check=True)
        return [line for line in diff.stdout.splitlines() if line.strip() and not line.endswith(" ./")]


def boot_clock() -> float:
    """Now, on the clock the machines' `pulled` stamps use."""
    return float(Path("/proc/uptime").read_text().split()[0])

"""The README's main job: a lab install network in namespaces, on one machine.

It builds an appliance namespace with an install bridge, runs the real
`si up` there as a subprocess, shows its status table, and tears everything
down afterwards (also on failure or Ctrl-C). Nothing here touches the host's
own interfaces.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from .configs import lab_toml
from .netns import Lab

SI = [sys.executable, "-m", "appliance.cli"]
console = Console()


@dataclass
class Appliance:
    """A running `si up` inside the lab's appliance namespace."""
    lab: Lab
    ns: str
    config: Path
    workdir: Path
    proc: subprocess.Popen | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / "appliance.log"

    def start(self, timeout: float = 60) -> dict:
        log = open(self.log_path, "w")
        self.proc = self.lab.popen(self.ns, *SI, "up", "--config", str(self.config),
                                   stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"si up exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            health = self.health()
            if health is not None and health.get("ok"):
                return health
            time.sleep(0.3)
        raise RuntimeError(f"si up did not become healthy in {timeout:.0f}s:\n{self.log_path.read_text()}")

    def get(self, path: str, timeout: float = 5) -> dict | list | None:
        """GET a JSON path of the appliance's API from inside its namespace; None if no answer."""
        out = self.lab.run(self.ns, "curl", "-s", "--max-time", str(timeout),
                           f"http://127.0.0.1:{_http_port(self.config)}{path}", check=False)
        try:
            return json.loads(out.stdout) if out.returncode == 0 and out.stdout else None
        except ValueError:
            return None

    def health(self) -> dict | None:
        return self.get("/api/health", timeout=2)

    def si(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        return self.lab.run(self.ns, *SI, *args, "--config", str(self.config), check=check, timeout=timeout)

    def stop(self) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.returncode if self.proc else None


def _http_port(config: Path) -> int:
    import tomllib
    return tomllib.loads(config.read_text()).get("http", {}).get("port", 8080)


def start_appliance(lab: Lab, workdir: Path, **config_kw) -> Appliance:
    ns = lab.namespace("app")
    lab.bridge(ns, "br0", "10.77.0.1/24")
    config = workdir / "appliance.toml"
    config.write_text(lab_toml(workdir, **config_kw))
    return Appliance(lab, ns, config, workdir)


def run_demo(workdir: Path | None = None, keep_running: bool = False) -> int:
    """Appliance up, golden client captured, two machines PXE-installed and booted."""
    from rich.live import Live

    from ..monitor import render_table
    from .install_lab import InstallLab

    workdir = Path(workdir or tempfile.mkdtemp(prefix="si-lab-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with Lab() as lab:
        ilab = InstallLab(lab, workdir)
        try:
            console.rule("[bold]SystemImager lab: an install network in namespaces")
            console.print("building the autoinstall kernel/initrd (cached after the first run) and "
                          "starting the appliance ...")
            ilab.up()
            console.print(ilab.si("status").stdout)
            console.print("golden client: building a small Debian-kernel system on a loop disk, "
                          "running prepareclient, then getimage ...")
            image = ilab.capture("demo_v1")
            console.print(f"image demo_v1 captured (version {image['latest']})")
            ilab.addclients("demo_v1", "node", 2)
            machines = [ilab.machine("node1", "52:54:00:77:00:11", firmware="bios"),
                        ilab.machine("node2", "52:54:00:77:00:12", firmware="uefi")]
            console.print("powering on node1 (BIOS) and node2 (UEFI); they PXE-boot and install:")
            t = time.time()
            for m in machines:
                m.guest.start()
            done: dict[str, float] = {}
            with Live(render_table([]), console=console, refresh_per_second=2) as live:
                while len(done) < len(machines) and time.time() - t < 1200:
                    rows = ilab.api("/api/installs") or []
                    live.update(render_table(rows))
                    for r in rows:
                        if r["state"] == "failed":
                            raise RuntimeError(f"{r['hostname']} failed: {r['last_line']}")
                        if r["state"] == "succeeded":
                            done.setdefault(r["hostname"], time.time() - t)
                    time.sleep(1)
            if len(done) < len(machines):
                raise RuntimeError("installs did not finish within 20 minutes")
            ilab.timings["install (both, concurrently)"] = max(done.values())
            t = time.time()
            for m in machines:
                booted = m.guest.wait_for(r"SI-GOLDEN-BOOTED hostname=(\S+) ip=(\S+) root=\S+ firmware=(\S+)", 300)
                console.print(f"[green]{m.hostname} booted its installed disk: hostname {booted.group(1)}, "
                              f"address {booted.group(2)}, firmware {booted.group(3)}")
            ilab.timings["reboot to installed system"] = time.time() - t
            moved = sum(r["bytes"] for r in ilab.api("/api/installs") or [])
            if keep_running:
                console.print(f"lab left running (consoles in {workdir}); Ctrl-C stops and cleans up")
                try:
                    while True:
                        time.sleep(1)
                except KeyboardInterrupt:
                    pass
        except Exception as exc:
            console.print(f"[red]lab demo failed: {exc}")
            console.print(f"logs kept in {workdir}")
            return 1
        finally:
            for m in locals().get("machines", []):
                m.guest.stop()
            ilab.close()
            if ilab.appliance:
                ilab.appliance.stop()
    console.rule("[bold]summary")
    for name, seconds in ilab.timings.items():
        console.print(f"  {name:<34} {seconds:7.1f} s")
    console.print(f"  {'image bytes moved to machines':<34} {moved / 2**20:7.1f} MiB")
    console.print(f"  {'total':<34} {time.time() - started:7.1f} s   (logs and consoles in {workdir})")
    return 0

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

    def health(self) -> dict | None:
        port = _http_port(self.config)
        out = self.lab.run(self.ns, "curl", "-s", "--max-time", "2",
                           f"http://127.0.0.1:{port}/api/health", check=False)
        try:
            return json.loads(out.stdout) if out.returncode == 0 else None
        except ValueError:
            return None

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
    workdir = Path(workdir or tempfile.mkdtemp(prefix="si-lab-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    phases: list[tuple[str, float]] = []
    with Lab() as lab:
        try:
            console.rule("[bold]SystemImager lab: an install network in namespaces")
            appliance = start_appliance(lab, workdir)
            t = time.time()
            appliance.start()
            phases.append(("appliance up", time.time() - t))
            console.print(appliance.si("status").stdout)
            if keep_running:
                console.print(f"Appliance running in namespace {appliance.ns}; logs in {workdir}. "
                              "Ctrl-C stops and cleans up.")
                try:
                    while appliance.proc.poll() is None:
                        time.sleep(1)
                except KeyboardInterrupt:
                    pass
            code = appliance.stop()
            if code != 0:
                console.print(f"[red]si up exited with {code}; log: {appliance.log_path}")
                return 1
        except Exception as exc:
            console.print(f"[red]lab demo failed: {exc}")
            console.print(f"logs kept in {workdir}")
            return 1
    console.rule("[bold]summary")
    for name, seconds in phases:
        console.print(f"  {name:<28} {seconds:6.1f} s")
    console.print(f"  {'total':<28} {time.time() - started:6.1f} s   (logs in {workdir})")
    return 0

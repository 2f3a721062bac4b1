"""`si up` as a real process inside a lab namespace, and what the lab asks of it.

Used by the demo (demo.py) and the install lab (install_lab.py); the appliance
runs exactly as an operator would run it, only in a namespace.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .configs import lab_toml
from .netns import Lab

SI = [sys.executable, "-m", "appliance.cli"]


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

"""The appliance (si up, DHCP + HTTP) started in a lab namespace, for DHCP tests."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.lab.netns import Lab
from appliance.store import Store

HERE = Path(__file__).parent
PY = sys.executable


def lab_config(state: Path, *, interface: str = "eth0", dhcp: dict | None = None, extra: str = "") -> str:
    """The appliance config DHCP tests use: two subnets (one reached through a relay)."""
    dhcp_lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in (dhcp or {}).items())
    return f"""
interface = "{interface}"
address = "10.77.0.1"
domain = "lab.example"
state_dir = "{state}"
log_dir = "{state}/log"
[services]
dhcp = true
http = true
tftp = false
dns = false
rsyncd = false
[[subnet]]
network = "10.77.0.0/24"
pools = ["10.77.0.100-10.77.0.250"]
gateway = "10.77.0.1"
dns_servers = ["10.77.0.1"]
lease_time = 600
[[subnet]]
network = "10.88.0.0/24"
pools = ["10.88.0.50-10.88.0.99"]
gateway = "10.88.0.1"
[dhcp]
{dhcp_lines}
[http]
port = 8080
{extra}
"""


class Appliance:
    """`si up` with DHCP (and HTTP for /api/health) in the server namespace."""

    def __init__(self, lab: Lab, state: Path, dhcp: dict | None = None, extra: str = "") -> None:
        self.lab, self.state = lab, state
        state.mkdir(parents=True, exist_ok=True)
        self.config = state / "appliance.toml"
        self.config.write_text(lab_config(state, dhcp={"probe_seconds": 0.5, **(dhcp or {})}, extra=extra))
        self.proc: subprocess.Popen | None = None
        self.logf = None
        self.log = state / "si.log"

    def store(self) -> Store:
        return Store(self.state / "appliance.db")

    def start(self, wait: bool = True) -> "Appliance":
        self.logf = open(self.log, "ab")
        self.proc = self.lab.popen(self.lab.names["srv"], PY, "-m", "appliance.cli", "up",
                                   "--config", str(self.config), stdout=self.logf, stderr=subprocess.STDOUT,
                                   cwd=str(HERE.parents[1]))
        if wait:
            self.wait_port(67)
        return self

    def wait_port(self, port: int, timeout: float = 20) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            out = self.lab.run(self.lab.names["srv"], "ss", "-Hlun", f"sport = :{port}").stdout
            if out.strip():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"DHCP never listened on {port}; log:\n{self.log.read_text()[-3000:]}")

    def health(self) -> dict:
        out = self.lab.run(self.lab.names["srv"], "curl", "-s", "http://127.0.0.1:8080/api/health",
                           check=False).stdout
        status = json.loads(out)
        return next(s for s in status["services"] if s["name"] == "dhcp")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.logf:
            self.logf.close()



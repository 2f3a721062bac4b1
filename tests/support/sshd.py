"""Test support: real OpenSSH servers inside lab namespaces, key auth only."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest


class SshKeys:
    def __init__(self, workdir: Path):
        for tool, package in (("sshd", "openssh-server"), ("ssh", "openssh-client")):
            if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
                pytest.fail(f"{tool} not found: install the Debian package {package} (./setup.sh does)")
        self.dir = workdir / "ssh"
        self.dir.mkdir(mode=0o700, exist_ok=True)
        self.client_key = self.dir / "id_ed25519"
        self.host_key = self.dir / "host_ed25519"
        for key in (self.client_key, self.host_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        self.authorized = self.dir / "authorized_keys"
        shutil.copy(self.client_key.with_suffix(".pub"), self.authorized)
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory

    def start_sshd(self, lab, ns: str, name: str, address: str, env: dict[str, str] | None = None):
        conf = self.dir / f"sshd_{name}.conf"
        lines = [f"ListenAddress {address}", "Port 22", f"HostKey {self.host_key}",
                 f"AuthorizedKeysFile {self.authorized}", "PermitRootLogin prohibit-password",
                 "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
                 "StrictModes no", f"PidFile {self.dir}/sshd_{name}.pid"]
        if env:
            lines.append("SetEnv " + " ".join(f"{k}={v}" for k, v in env.items()))
        conf.write_text("\n".join(lines) + "\n")
        proc = lab.popen(ns, "/usr/sbin/sshd", "-D", "-e", "-f", str(conf),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            probe = lab.run(ns, "bash", "-c", f"exec 3<>/dev/tcp/{address}/22", check=False)
            if probe.returncode == 0:
                return proc
            time.sleep(0.1)
        pytest.fail(f"sshd in {ns} did not listen on {address}:22")

"""`si up` as a real process inside a namespace; the default-route refusal."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from appliance.lab.configs import lab_toml

SI = [sys.executable, "-m", "appliance.cli"]


def _appliance_ns(lab, tmp_path, services=("http",)):
    ns = lab.namespace("app")
    lab.bridge(ns, "br0", "10.77.0.1/24")
    cfg = tmp_path / "appliance.toml"
    cfg.write_text(lab_toml(tmp_path, services=services))
    return ns, cfg


def _health(lab, ns, port=8080):
    out = lab.run(ns, "curl", "-s", "--max-time", "2", f"http://127.0.0.1:{port}/api/health", check=False)
    return json.loads(out.stdout) if out.returncode == 0 and out.stdout else None


def test_up_serves_health_and_stops_on_sigterm(lab, tmp_path):
    ns, cfg = _appliance_ns(lab, tmp_path)
    proc = lab.popen(ns, *SI, "up", "--config", str(cfg), stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, text=True)
    health = None
    deadline = time.time() + 20
    while time.time() < deadline and health is None:
        if proc.poll() is not None:
            pytest.fail(f"si up exited early:\n{proc.stdout.read()}")
        time.sleep(0.2)
        health = _health(lab, ns)
    assert health and health["ok"] and health["interface"] == "br0"
    assert [s["name"] for s in health["services"]] == ["http"]
    # The same table through 'si status'.
    status = lab.run(ns, *SI, "status", "--config", str(cfg), check=False)
    assert status.returncode == 0 and "http" in status.stdout and "up" in status.stdout
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    output = proc.stdout.read()
    assert "stopped" in output
    assert "Traceback" not in output
    assert _health(lab, ns) is None, "still answering after SIGTERM"


def test_up_reloads_on_sighup(lab, tmp_path):
    ns, cfg = _appliance_ns(lab, tmp_path)
    proc = lab.popen(ns, *SI, "up", "--config", str(cfg), stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 20
    while time.time() < deadline and _health(lab, ns) is None:
        time.sleep(0.2)
    cfg.write_text(lab_toml(tmp_path, services=("http",), http_port=8081))
    proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 20
    while time.time() < deadline and _health(lab, ns, 8081) is None:
        time.sleep(0.2)
    assert _health(lab, ns, 8081) is not None, "new config's port not served after SIGHUP"
    assert _health(lab, ns, 8080) is None
    # A broken config on SIGHUP is refused; the running one keeps serving.
    cfg.write_text("interface = 5\n")
    proc.send_signal(signal.SIGHUP)
    time.sleep(1)
    assert _health(lab, ns, 8081) is not None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert "reload refused" in proc.stdout.read()


def test_refuses_interface_with_default_route(lab, tmp_path):
    ns, cfg = _appliance_ns(lab, tmp_path)
    lab.default_route(ns, "10.77.0.254")
    out = lab.run(ns, *SI, "up", "--config", str(cfg), check=False, timeout=30)
    assert out.returncode == 2
    assert "carries a default route" in out.stderr and "--force" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "state").exists(), "a refused start must write nothing"
    # --force serves anyway.
    proc = lab.popen(ns, *SI, "up", "--config", str(cfg), "--force",
                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 20
    while time.time() < deadline and _health(lab, ns) is None:
        time.sleep(0.2)
    assert _health(lab, ns) is not None
    proc.terminate()
    assert proc.wait(timeout=15) == 0


def test_refuses_missing_interface_and_foreign_address(lab, tmp_path):
    ns = lab.namespace("app")
    cfg = tmp_path / "appliance.toml"
    cfg.write_text(lab_toml(tmp_path, services=("http",)))
    out = lab.run(ns, *SI, "up", "--config", str(cfg), check=False, timeout=30)
    assert out.returncode == 2 and "br0 does not exist" in out.stderr
    lab.bridge(ns, "br0", "10.99.0.1/24")
    out = lab.run(ns, *SI, "up", "--config", str(cfg), check=False, timeout=30)
    assert out.returncode == 2 and "none in the configured subnets" in out.stderr

"""`si up` as a real process inside a namespace; the default-route refusal."""
from __future__ import annotations

import glob
import json
import os
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
    # Every service runs, yet no install could start: it says why (nothing is built here yet).
    assert "installs cannot start: no autoinstall kernel and initrd" in status.stderr, status.stderr
    assert "run 'si mkbootimage'" in status.stderr
    assert health["installs_blocked_by"] and health["ok"]
    # The console's operator token is made at the first start, readable by root only.
    token = tmp_path / "state" / "console-token"
    assert token.is_file() and oct(token.stat().st_mode & 0o777) == "0o600"
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


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = []
        for task in glob.glob(f"/proc/{p}/task/*/children"):     # any thread may have started one
            try:
                with open(task) as f:
                    kids += [int(k) for k in f.read().split()]
            except OSError:
                pass
        out += kids
        todo += kids
    return out


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm-to-all"])
def test_a_stop_is_quiet_and_complete(lab, tmp_path, how):
    """Ctrl-C in a terminal (SIGINT to the foreground process group) and a stop as systemd or
    timeout sends it (SIGTERM to every process, the TFTP workers too): no tracebacks, no
    worker 'died ... starting another', status 0, nothing of the appliance left running."""
    ns, cfg = _appliance_ns(lab, tmp_path, services=("tftp", "http"))
    proc = lab.popen(ns, *SI, "up", "--config", str(cfg), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                     text=True, start_new_session=True)
    deadline = time.time() + 20
    while time.time() < deadline and _health(lab, ns) is None:
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    workers = [p for p in _descendants(proc.pid) if b"services.tftp.worker" in open(f"/proc/{p}/cmdline", "rb").read()]
    assert workers, "the TFTP workers are not running (tftp.workers default: one per core)"
    everyone = [proc.pid, *_descendants(proc.pid)]
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        for pid in everyone:
            os.kill(pid, signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    output = proc.stdout.read()
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert "died" not in output and "starting another" not in output, output
    assert "stopped" in output
    time.sleep(0.5)
    assert not [p for p in everyone if os.path.exists(f"/proc/{p}") and
                open(f"/proc/{p}/stat").read().split()[2] != "Z"], "processes left running after the stop"

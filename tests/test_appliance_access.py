"""HTTP and DNS answer the install network, loopback and allow_clients only: `si up` in namespaces.

Found by an independent probe: /api/hosts (MACs and addresses) and /boot/
answered 200 to a source outside every subnet. An outsider now gets a 403
from HTTP and no DNS answer at all (a drop: nothing to reflect), and both
are counted; adding its network to allow_clients (SIGHUP) lets it in.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from appliance.lab.configs import lab_toml
from support.needs import require_programs

SI = [sys.executable, "-m", "appliance.cli"]


def _health(lab, ns):
    out = lab.run(ns, "curl", "-s", "--max-time", "2", "http://127.0.0.1:8080/api/health", check=False)
    return json.loads(out.stdout) if out.returncode == 0 and out.stdout else None


def _http_status(lab, ns, path):
    out = lab.run(ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3",
                  f"http://10.77.0.1:8080{path}", check=False)
    return out.stdout.strip()


def _dig(lab, ns):
    return lab.run(ns, "dig", "@10.77.0.1", "+tries=1", "+time=2", "+short", "lab.example", "SOA", check=False)


def test_http_and_dns_refuse_clients_off_the_install_network(lab, tmp_path):
    require_programs("dig", "curl")
    app = lab.namespace("app")
    lab.bridge(app, "br0", "10.77.0.1/24")
    inside = lab.namespace("in")
    lab.veth(inside, "eth0", app, "vin", addr_a="10.77.0.50/24", bridge_b="br0")
    outside = lab.namespace("out")          # routed in from another network, as from an office LAN
    lab.veth(outside, "eth0", app, "vout", addr_a="192.0.2.2/24", addr_b="192.0.2.1/24")
    lab.default_route(outside, "192.0.2.1")
    cfg = tmp_path / "appliance.toml"
    toml = lab_toml(tmp_path, services=("dns", "http"))
    cfg.write_text(toml)
    proc = lab.popen(app, *SI, "up", "--config", str(cfg), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline and not (_health(lab, app) or {}).get("ok"):
        assert proc.poll() is None, "si up exited early"
        time.sleep(0.2)

    assert _http_status(lab, inside, "/api/hosts") == "200"
    assert "lab.example." in _dig(lab, inside).stdout
    assert _http_status(lab, outside, "/api/hosts") == "403"
    assert _http_status(lab, outside, "/boot/pxelinux.0") == "403"
    refused = _dig(lab, outside)
    assert refused.returncode == 9 and "timed out" in refused.stdout, refused.stdout   # dig: no reply
    health = json.dumps(_health(lab, app))
    assert '"refused_clients": 2' in health and '"refused_clients": 1' in health, health

    cfg.write_text('allow_clients = ["192.0.2.0/24"]\n' + toml)
    proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while time.time() < deadline and _http_status(lab, outside, "/api/hosts") != "200":
        time.sleep(0.2)
    assert _http_status(lab, outside, "/api/hosts") == "200"
    assert "lab.example." in _dig(lab, outside).stdout

"""pushupdate over real ssh to client namespaces: ok, failing and unreachable hosts."""
from __future__ import annotations

import subprocess
import sys

from appliance.lab.configs import lab_toml
from appliance.store import Store
from appliance.store.records import Host
from support.sshd import SshKeys

SI = [sys.executable, "-m", "appliance.cli"]


def _network(lab, tmp_path, clients: list[str]):
    app = lab.namespace("app")
    lab.bridge(app, "br0", "10.77.0.1/24")
    namespaces = {}
    for i, name in enumerate(clients, start=11):
        ns = lab.namespace(name)
        lab.veth(ns, "eth0", app, f"v{name}", addr_a=f"10.77.0.{i}/24", bridge_b="br0")
        namespaces[name] = (ns, f"10.77.0.{i}")
    cfg = tmp_path / "appliance.toml"
    cfg.write_text(lab_toml(tmp_path, services=("http",)))
    return app, namespaces, cfg


def test_pushupdate_reports_each_host(lab, tmp_path):
    keys = SshKeys(tmp_path)
    app, clients, cfg = _network(lab, tmp_path, ["c1", "c2", "c3"])
    # A stand-in updateclient that tells hosts apart by the environment sshd gives it.
    fake = tmp_path / "fake-updateclient"
    fake.write_text('#!/bin/sh\necho "updating $SI_TEST_HOST: $*"\n'
                    '[ "$SI_TEST_HOST" = c2 ] && { echo "rsync error: disk full" >&2; exit 12; }\nexit 0\n')
    fake.chmod(0o755)
    for name in ("c1", "c2"):  # c3 runs no sshd: unreachable
        ns, address = clients[name]
        keys.start_sshd(lab, ns, name, address, env={"SI_TEST_HOST": name})
    store = Store(tmp_path / "state" / "appliance.db")
    for name, (_, address) in clients.items():
        store.upsert_host(Host(name, ip=address, image="web_v1", grp="web"))
    store.upsert_host(Host("db1", ip="10.77.0.99", grp="db"))

    out = lab.run(app, *SI, "pushupdate", "--config", str(cfg), "--image", "web_v2", "--group", "web",
                  "--ssh-key", str(keys.client_key), "--command", str(fake), "--concurrency", "2",
                  check=False, timeout=120)
    text = out.stdout
    assert out.returncode == 1, text + out.stderr
    rows = [[c.strip() for c in l.split("│")[1:-1]] for l in text.splitlines() if l.startswith("│")]
    lines = {r[0]: " ".join(r) for r in rows if r and r[0] in ("c1", "c2", "c3")}
    assert "ok" in lines["c1"] and "failed" in lines["c2"] and "12" in lines["c2"]
    assert "unreachable" in lines["c3"]
    assert "db1" not in text, "a host outside the group was touched"
    assert "1 ok, 2 not ok" in text

    # Dry run passes --dry-run through and shows what each would change.
    out = lab.run(app, *SI, "pushupdate", "--config", str(cfg), "--image", "web_v2", "--hosts", "c1",
                  "--ssh-key", str(keys.client_key), "--command", str(fake), "--dry-run",
                  check=False, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "--image web_v2 --dry-run" in out.stdout and "c1 would change" in out.stdout


def test_pushupdate_needs_matching_hosts(lab, tmp_path):
    app, _, cfg = _network(lab, tmp_path, [])
    Store(tmp_path / "state" / "appliance.db")
    out = lab.run(app, *SI, "pushupdate", "--config", str(cfg), "--image", "x", "--hosts", "nope*",
                  check=False)
    assert out.returncode == 1 and "no hosts match" in out.stderr


def test_pushupdate_runs_the_real_updateclient(lab, tmp_path):
    """Real ssh, real updateclient, real rsync daemon: one updated, one failing, one unreachable."""
    keys = SshKeys(tmp_path)
    app, clients, cfg = _network(lab, tmp_path, ["c1", "c2", "c3"])
    v1, v2 = tmp_path / "img" / "v1", tmp_path / "img" / "v2"
    for root, text in ((v1, "tool v1\n"), (v2, "tool version 2\n")):
        (root / "usr/bin").mkdir(parents=True)
        (root / "usr/bin/tool").write_text(text)
    conf = tmp_path / "rsyncd.conf"
    conf.write_text(f"pid file = {tmp_path}/rsyncd.pid\nuse chroot = no\nnumeric ids = yes\n"
                    f"[web@2]\npath = {v2}\nread only = yes\nuid = root\ngid = root\n")
    lab.popen(app, "rsync", "--daemon", "--no-detach", f"--config={conf}", "--address=10.77.0.1")
    roots = {"c1": tmp_path / "c1-root", "c2": tmp_path / "c2-is-a-file"}
    subprocess.run(["cp", "-a", str(v1), str(roots["c1"])], check=True)
    roots["c2"].write_text("not a directory: updateclient must fail here\n")
    for name in ("c1", "c2"):
        ns, address = clients[name]
        keys.start_sshd(lab, ns, name, address, env={"SI_ROOT": str(roots[name])})
    store = Store(tmp_path / "state" / "appliance.db")
    for name, (_, address) in clients.items():
        store.upsert_host(Host(name, ip=address, grp="web"))
    from appliance.client import siclient
    # Each client updates its own tree (the namespaces share one file system here).
    command = f"""sh -c 'exec {sys.executable} {siclient.__file__} updateclient --root "$SI_ROOT" --no-report "$@"' updateclient"""
    out = lab.run(app, *SI, "pushupdate", "--config", str(cfg), "--image", "web:2", "--group", "web",
                  "--ssh-key", str(keys.client_key), "--command", command, check=False, timeout=180)
    text = out.stdout
    rows = [[c.strip() for c in l.split("│")[1:-1]] for l in text.splitlines() if l.startswith("│")]
    verdict = {r[0]: r[1] for r in rows if r and r[0] in ("c1", "c2", "c3")}
    assert verdict == {"c1": "ok", "c2": "failed", "c3": "unreachable"}, text + out.stderr
    assert out.returncode == 1
    assert (roots["c1"] / "usr/bin/tool").read_text() == "tool version 2\n"

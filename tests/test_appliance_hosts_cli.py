"""si hosts: set, list, reinstall/local, with one-line errors and nothing changed on error."""
from __future__ import annotations

from appliance.cli import main
from appliance.lab.configs import lab_toml
from appliance.store import Store


def _cfg(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text(lab_toml(tmp_path))
    return str(path)


def test_set_then_switch_netboot(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    Store(tmp_path / "state" / "appliance.db").add_image_version("web_v1", 1, "web_v1/1")
    assert main(["hosts", "set", "node1", "--config", cfg, "--mac", "52-54-00-AA-00-01",
                 "--ip", "10.77.0.11", "--image", "web_v1", "--console", "ttyS0,115200n8"]) == 0
    store = Store(tmp_path / "state" / "appliance.db")
    host = store.host("node1")
    assert (host.mac, host.ip, host.image, host.console, host.netboot) == \
        ("52:54:00:aa:00:01", "10.77.0.11", "web_v1", "ttyS0,115200n8", "install")
    assert main(["hosts", "local", "node1", "--config", cfg]) == 0
    assert store.host("node1").netboot == "local"
    assert main(["hosts", "reinstall", "node1", "--config", cfg]) == 0
    assert store.host("node1").netboot == "install"
    assert main(["hosts", "list", "--config", cfg]) == 0
    assert "node1" in capsys.readouterr().out


def test_errors_change_nothing(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    assert main(["hosts", "set", "node1", "--config", cfg, "--mac", "52:54:00:aa:00:01", "--ip", "10.77.0.11"]) == 0
    store = Store(tmp_path / "state" / "appliance.db")
    before = store.hosts()
    for argv, message in (
        (["hosts", "set", "node2", "--mac", "52:54:00:aa:00:01"], "already belongs to node1"),
        (["hosts", "set", "node2", "--ip", "10.77.0.11"], "already belongs to node1"),
        (["hosts", "set", "node2", "--ip", "192.0.2.1"], "none of the configured subnets"),
        (["hosts", "set", "node2", "--ip", "10.77.0.1"], "--ip: 10.77.0.1 is the install server's own address"),
        (["hosts", "set", "node2", "--ip", "10.77.0.0"], "--ip: 10.77.0.0 is the network address of 10.77.0.0/24"),
        (["hosts", "set", "node2", "--ip", "10.77.0.255"], "is the broadcast address of 10.77.0.0/24"),
        (["hosts", "set", "node2", "--mac", "zz"], "--mac"),
        (["hosts", "set", "node1", "--image", "../../../etc"], "--image: '../../../etc' is not a valid image name"),
        (["hosts", "set", "node1", "--image", "nosuch"], "--image: no image 'nosuch'"),
        (["hosts", "set", "bad name!", "--mac", "52:54:00:aa:00:02"], "hostname"),
        (["hosts", "reinstall", "ghost"], "no host 'ghost'"),
    ):
        capsys.readouterr()
        # Bad input is 2; a host that is not there is an operation that failed, 1.
        assert main(argv + ["--config", cfg]) == (1 if "ghost" in argv else 2)
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err
    assert store.hosts() == before


def test_an_address_another_client_leases_needs_force_and_keeps_that_lease(tmp_path, capsys):
    import time
    from appliance.store.records import Lease
    cfg = _cfg(tmp_path)
    store = Store(tmp_path / "state" / "appliance.db")
    lease = Lease("52:54:00:aa:00:01", "10.77.0.102", None, time.time() + 600)
    store.save_leases([lease])
    argv = ["hosts", "set", "node10", "--config", cfg, "--ip", "10.77.0.102", "--mac", "52:54:00:aa:00:10"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "--ip: 10.77.0.102 is leased to 52:54:00:aa:00:01 until" in err and "--force" in err and "\n" not in err
    assert store.host("node10") is None and store.leases() == [lease]
    assert main(argv + ["--force"]) == 0
    assert store.host("node10").ip == "10.77.0.102" and store.leases() == [lease]


def test_show_then_delete_a_host(tmp_path, capsys):
    import json
    import os
    from pathlib import Path

    from appliance.config import load
    cfg = _cfg(tmp_path)
    scripts = load(Path(cfg)).scripts_dir
    assert main(["hosts", "set", "node1", "--config", cfg, "--mac", "52:54:00:aa:00:01", "--ip", "10.77.0.11"]) == 0
    assert main(["hosts", "set", "node2", "--config", cfg, "--ip", "10.77.0.12"]) == 0
    scripts.mkdir(parents=True, exist_ok=True)
    os.symlink("web.master", scripts / "node1.sh")
    (scripts / "node2.sh").write_text("#!/bin/sh\n# edited by hand\n")
    (scripts / "hosts").write_text("10.77.0.11\tnode1.lab.example\tnode1\n10.77.0.12\tnode2.lab.example\tnode2\n")
    capsys.readouterr()
    assert main(["hosts", "show", "node1", "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "mac:       52:54:00:aa:00:01" in out and "has no (valid) image" in out, out
    assert main(["hosts", "show", "node1", "--json", "--config", cfg]) == 0
    assert json.loads(capsys.readouterr().out)["host"]["ip"] == "10.77.0.11"
    assert main(["hosts", "delete", "node1", "--config", cfg]) == 0
    assert not (scripts / "node1.sh").is_symlink()
    assert "node1" not in (scripts / "hosts").read_text() and "node2" in (scripts / "hosts").read_text()
    assert main(["hosts", "delete", "node2", "--config", cfg]) == 0
    assert "kept" in capsys.readouterr().out and (scripts / "node2.sh").is_file()   # the admin's edit stays
    assert main(["hosts", "show", "node1", "--config", cfg]) == 1
    assert main(["hosts", "delete", "node1", "--config", cfg]) == 1
    assert Store(tmp_path / "state" / "appliance.db").hosts() == []

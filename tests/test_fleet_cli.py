"""What an operator sees of the fleet in the CLI: each host's transport in `si hosts list`
and `si hosts show` (the [fleet] table's choice by image and group), and the state of the
current version's stream in `si images show` (absent, packing, ready)."""
from __future__ import annotations

import json

from appliance.cli import main
from appliance.config import load
from appliance.fleet import pack_dir
from appliance.lab.configs import lab_toml
from appliance.store import Store
from appliance.store.records import Host
from services.fleet import pack

from support.needs import require_programs


def _setup(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text(lab_toml(tmp_path, fleet={"transport": "rsync", "images": {"web": "multicast"},
                                              "groups": {"racka": "bittorrent"}}))
    store = Store(tmp_path / "state" / "appliance.db")
    tree = tmp_path / "web1"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/hostname").write_text("golden\n")
    for name in ("web", "db"):
        store.add_image_version(name, 1, str(tree))
        store.finish_image_version(name, 1, 4096)
    store.upsert_host(Host("node1", image="web"))
    store.upsert_host(Host("node2", image="web", grp="racka"))
    store.upsert_host(Host("node3", image="db"))
    store.upsert_host(Host("node4"))
    return str(path), tree


def test_hosts_list_says_how_each_host_installs(tmp_path, capsys):
    cfg, _ = _setup(tmp_path)
    capsys.readouterr()
    assert main(["hosts", "list", "--json", "--config", cfg]) == 0
    rows = {r["hostname"]: r["transport"] for r in json.loads(capsys.readouterr().out)}
    # the group beats the image, the image beats the default; no image, no install
    assert rows == {"node1": "multicast", "node2": "bittorrent", "node3": "rsync", "node4": None}
    assert main(["hosts", "show", "node2", "--config", cfg]) == 0
    fields = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines())
    assert fields["transport"].strip() == "bittorrent"


def test_images_show_gives_the_state_of_the_stream(tmp_path, capsys):
    require_programs("tar", "zstd", "mktorrent")
    cfg, tree = _setup(tmp_path)
    directory = pack_dir(load(tmp_path / "a.toml"), "web", 1)

    def stream():
        capsys.readouterr()
        assert main(["images", "show", "web", "--json", "--config", cfg]) == 0
        return json.loads(capsys.readouterr().out)["fleet_stream"]

    assert stream()["state"] == "absent"
    directory.with_name("1.partial").mkdir(parents=True)
    assert stream()["state"] == "packing"
    built = pack.build(tree, directory, "http://10.77.0.1:6969/announce")
    got = stream()
    assert (got["state"], got["bytes"], got["info_hash"]) == ("ready", built.size, built.info_hash)
    capsys.readouterr()
    assert main(["images", "show", "web", "--config", cfg]) == 0
    fields = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines())
    assert fields["fleet stream"].strip().startswith("ready for version 1: ")


def test_the_demo_transport_is_a_valid_fleet_table(tmp_path):
    """si lab demo --transport: the table it writes is one the appliance accepts, and it
    reports each machine's transport lines from the install log."""
    from appliance.lab.demo import demo_fleet, transport_lines
    assert demo_fleet("rsync") is None
    for transport in ("bittorrent", "multicast"):
        path = tmp_path / f"{transport}.toml"
        path.write_text(lab_toml(tmp_path, fleet=demo_fleet(transport)))
        settings = load(path).fleet
        assert settings.transport_for("demo_v1") == transport and settings.min_receivers == 2
    log = ("[9.1] SystemImager: progress: rsync 15%\n"
           "[9.2] SystemImager: transport multicast: session on port 9000\n"
           "[20.0] SystemImager: transport multicast then rsync: 1234 bytes repaired from the appliance\n")
    assert transport_lines({"log": log}) == ["transport multicast: session on port 9000",
                                             "transport multicast then rsync: 1234 bytes repaired from the appliance"]

"""si images rename, copy, export and import, on a tree with everything a system holds
(hard links, ACLs, xattrs, devices, sparse files, odd owners and names), through the CLI."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.config import load
from appliance.images import ImageStore
from appliance.lab.configs import lab_toml
from appliance.store import Store
from appliance.store.records import Host
from services.rsyncd.render import conf_path
from support.images_tree import build_golden_tree, diff, snapshot


@pytest.fixture
def site(tmp_path):
    cfg_path = tmp_path / "a.toml"
    cfg_path.write_text(lab_toml(tmp_path))
    cfg = load(cfg_path)
    store = Store(cfg.db_path)
    images = ImageStore(cfg, store)
    target = images.begin("web", golden_client="10.0.0.5", ip_method="static_dhcp", post_install="reboot")
    build_golden_tree(target.path, files=40)
    images.commit(target, 123456)
    store.upsert_host(Host("node1", mac="52:54:00:00:00:01", image="web"))
    cfg.scripts_dir.mkdir(parents=True, exist_ok=True)
    os.symlink("web.master", cfg.scripts_dir / "node1.sh")
    return cfg_path, cfg, store, images


def si(cfg_path, *args):
    return main([*args[:2], "--config", str(cfg_path), *args[2:]])


def test_export_then_import_keeps_every_detail(site, tmp_path, capsys):
    cfg_path, cfg, store, images = site
    archive = tmp_path / "web.si.tar.zst"
    assert si(cfg_path, "images", "export", "web", "-o", str(archive)) == 0
    assert "exported web:1" in capsys.readouterr().out
    listing = subprocess.run(["tar", "-tf", str(archive), "--zstd"], capture_output=True, text=True).stdout.split("\n")
    assert listing[0] == "systemimager-image.json" and "tree/etc/fstab" in listing
    assert si(cfg_path, "images", "import", str(archive), "--as", "web_copy") == 0
    assert "imported" in capsys.readouterr().out and store.image("web_copy")["ip_method"] == "static_dhcp"
    problems = diff(snapshot(images.path_of("web")), snapshot(images.path_of("web_copy")))
    assert not problems, problems[:10]
    assert (cfg.scripts_dir / "web_copy.master").exists(), "the imported image has its master script"
    assert si(cfg_path, "images", "import", str(archive)) == 0, "into its own name: the next version"
    assert [v["version"] for v in store.image_versions("web")] == [1, 2]
    assert json.loads(subprocess.run(["tar", "-xOf", str(archive), "--zstd", "systemimager-image.json"],
                                     capture_output=True).stdout)["size"] == 123456


def test_a_bad_archive_is_refused_and_changes_nothing(site, tmp_path, capsys):
    cfg_path, cfg, store, images = site
    junk = tmp_path / "junk.tar.zst"
    junk.write_bytes(os.urandom(4096))
    assert si(cfg_path, "images", "import", str(junk)) == 2
    err = capsys.readouterr().err
    assert "not an image export" in err and err.count("\n") == 1
    assert si(cfg_path, "images", "import", str(tmp_path / "nosuch")) == 2
    # An export cut short: the metadata reads, the tree does not.
    archive = tmp_path / "web.tar.zst"
    assert si(cfg_path, "images", "export", "web", "-o", str(archive)) == 0
    cut = tmp_path / "cut.tar.zst"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    assert si(cfg_path, "images", "import", str(cut), "--as", "half") == 1
    assert "import failed" in capsys.readouterr().err
    assert store.image("half") is None and not (cfg.images_dir / ".versions" / "half" / "1").exists()
    assert [i["name"] for i in store.images()] == ["web"]


def test_export_writes_whole_or_not_at_all(site, tmp_path, capsys):
    cfg_path, cfg, store, images = site
    out = tmp_path / "ro" / "web.tar.zst"
    assert si(cfg_path, "images", "export", "nosuch", "-o", str(out)) == 1
    assert si(cfg_path, "images", "export", "web:7", "-o", str(out)) == 1
    assert "web:7: no such complete version" in capsys.readouterr().err
    assert si(cfg_path, "images", "export", "web", "-o", str(tmp_path)) == 2, "a directory is not a file"
    assert not list(tmp_path.glob(".*part*")) and not list(tmp_path.glob(".*export*"))


def test_copy_shares_files_and_gets_its_own_master(site, capsys):
    cfg_path, cfg, store, images = site
    assert si(cfg_path, "images", "copy", "web", "web_test") == 0
    assert "web_test:1" in capsys.readouterr().out
    a, b = images.path_of("web") / "usr/lib/big.bin", images.path_of("web_test") / "usr/lib/big.bin"
    assert os.stat(a).st_ino == os.stat(b).st_ino, "shared by a hard link"
    assert store.image("web_test")["post_install"] == "reboot"
    assert (cfg.scripts_dir / "web_test.master").exists()
    assert si(cfg_path, "images", "copy", "web", "web_test") == 2, "the name is taken"
    assert si(cfg_path, "images", "copy", "nosuch", "x") == 1


def test_rename_moves_versions_hosts_and_links(site, capsys):
    cfg_path, cfg, store, images = site
    before = snapshot(images.path_of("web"))
    assert si(cfg_path, "images", "rename", "web", "compute") == 0
    out = capsys.readouterr().out
    assert "1 host(s) now install compute" in out
    assert store.image("web") is None and store.host("node1").image == "compute"
    assert not diff(before, snapshot(images.path_of("compute")))
    assert os.readlink(cfg.images_dir / "compute").endswith("compute/1")
    assert not (cfg.images_dir / "web").is_symlink()
    assert os.readlink(cfg.scripts_dir / "node1.sh") == "compute.master"
    assert (cfg.scripts_dir / "compute.master").exists() and not (cfg.scripts_dir / "web.master").exists()
    modules = conf_path(cfg).read_text()
    assert "[compute]" in modules and "[web]" not in modules, "the rsync daemon serves the new name"
    assert si(cfg_path, "images", "rename", "web", "x") == 2, "no image web any more"
    assert si(cfg_path, "images", "rename", "compute", "../x") == 2

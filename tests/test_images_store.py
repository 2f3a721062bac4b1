"""Image store bookkeeping, names, exclusions, and the golden-client program's pure parts."""
from __future__ import annotations

import asyncio
import importlib.util
import os
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from appliance import getimage as g
from appliance.config import Config
from appliance.images import ImageError, ImageStore, check_image_name, disk_usage, parse_ref, valid_image_name
from appliance.store import Store

SICLIENT = Path(__file__).resolve().parents[1] / "appliance/client/siclient.py"


@pytest.fixture
def images(tmp_path):
    cfg = Config(interface="lo", address=IPv4Address("127.0.0.1"), state_dir=tmp_path / "state")
    return ImageStore(cfg, Store(cfg.db_path))


@pytest.mark.parametrize("name", ["web", "Web_v1.2+b-3", "a", "x" * 64, "1abc"])
def test_good_names(name):
    assert valid_image_name(name) and check_image_name(name) == name


@pytest.mark.parametrize("name", ["", "../x", "a/b", "..", "a..b", "-x", ".hidden", "x" * 65, "a b",
                                  "a\nb", "a@1", "é", "a;b", "/abs"])
def test_unsafe_names_are_refused_in_one_line(name):
    assert not valid_image_name(name)
    with pytest.raises(ImageError) as exc:
        check_image_name(name)
    assert "\n" not in str(exc.value).replace(repr(name), "")


def test_parse_ref():
    assert parse_ref("web") == ("web", None) and parse_ref("web:12") == ("web", 12)
    assert parse_ref("web@12") == ("web", 12)                  # the rsync module's spelling
    for bad in ("web@", "web@0", "web@x", "web@-1", "../web@1", "web:", "web:0", "web:x", "web:1:2"):
        with pytest.raises(ImageError):
            parse_ref(bad)


def test_versions_only_complete_ones_become_current(images):
    t1 = images.begin("web", golden_client="gc", ip_method="static", post_install="beep")
    assert t1.version == 1 and t1.parent is None and t1.link_dest is None and t1.path.is_dir()
    assert images.current("web") is None and not images.current_link("web").exists()
    (t1.path / "f").write_text("one")
    images.commit(t1, 3)
    assert os.path.realpath(images.current_link("web")) == str(t1.path)
    t2 = images.begin("web")
    assert (t2.version, t2.parent, t2.link_dest) == (2, 1, t1.path)
    images.abandon(t2)   # failed pull: stays incomplete, link untouched
    assert images.store.image_version("web", 2)["state"] == "incomplete"
    assert os.path.realpath(images.current_link("web")) == str(t1.path)
    t2b = images.begin("web")  # the incomplete number is reused, started clean
    assert t2b.version == 2 and not any(t2b.path.iterdir())
    images.commit(t2b, 0)
    assert images.current("web")["version"] == 2
    row = images.store.image("web")
    assert (row["golden_client"], row["ip_method"], row["post_install"]) == ("gc", "static", "beep")


def test_a_commit_killed_before_its_link_is_mended_by_reconcile(images, monkeypatch):
    """kill -9 between the store's commit and the link: the store is the truth, the link follows at si up."""
    t1 = images.begin("web")
    images.commit(t1, 0)
    t2 = images.begin("web")
    (t2.path / "f").write_text("two")
    monkeypatch.setattr(images, "point_current", lambda image: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):      # the process dies right after the store's commit
        images.commit(t2, 3)
    monkeypatch.undo()
    assert images.current("web")["version"] == 2
    assert os.path.realpath(images.current_link("web")) == str(t1.path), "the link lags"
    assert images.reconcile() == ["web"]
    assert os.path.realpath(images.current_link("web")) == str(t2.path)
    assert images.reconcile() == [], "nothing to mend twice"


def test_update_swaps_a_staged_copy(images):
    t1 = images.begin("web")
    (t1.path / "f").write_text("old")
    images.commit(t1, 3)
    inode_before = os.stat(t1.path / "f").st_ino
    up = images.begin("web", update=True)
    assert up.update and up.version == 1 and up.write_to != up.path and up.link_dest == t1.path
    up.write_to.mkdir()
    (up.write_to / "f").write_text("new")
    images.commit(up, 3)
    assert (t1.path / "f").read_text() == "new" and not up.write_to.exists()
    assert os.stat(t1.path / "f").st_ino != inode_before
    assert [v["version"] for v in images.versions("web")] == [1]


def test_delete_version_and_image(images):
    for text in ("a", "b"):
        t = images.begin("web")
        (t.path / "f").write_text(text)
        images.commit(t, 1)
    assert images.delete("web", 2) == [2]
    assert os.path.realpath(images.current_link("web")).endswith("/web/1")
    with pytest.raises(ImageError):
        images.delete("web", 7)
    assert images.delete("web") == [1]
    assert images.store.image("web") is None and not images.current_link("web").exists()
    with pytest.raises(ImageError):
        images.delete("web")


def test_a_second_pull_of_the_same_image_is_refused_while_one_runs(images):
    with images.locked("web"):
        with pytest.raises(ImageError, match="another getimage"):
            with images.locked("web"):
                pass


def test_disk_usage_counts_hard_links_once(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "big").write_bytes(os.urandom(1 << 20))
    os.link(a / "big", b / "big")
    assert disk_usage([a, b]) - disk_usage([a]) < 64 * 1024


MOUNTS = """\
/dev/vda1 / ext4 rw,relatime 0 0
proc /proc proc rw,nosuid 0 0
sysfs /sys sysfs rw 0 0
devtmpfs /dev devtmpfs rw 0 0
devpts /dev/pts devpts rw 0 0
tmpfs /run tmpfs rw 0 0
/dev/vda2 /boot/efi vfat rw 0 0
/dev/vdb1 /srv/data xfs rw 0 0
server:/export /home nfs4 rw 0 0
/dev/sr0 /media/cd\\040rom iso9660 ro 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw 0 0
tmpfs /weird[dir]* tmpfs rw 0 0
garbage
"""


def test_mount_exclusions():
    assert g.mount_exclusions(MOUNTS) == ["/proc/*", "/sys/*", "/dev/*", "/dev/pts/*", "/run/*", "/home/*",
                                          "/media/cd rom/*", "/sys/fs/cgroup/*", "/weird\\[dir\\]\\*/*"]


def test_option_checks():
    ok = g.Options(golden_client="10.0.0.2", image="web")
    g.check_options(ok)
    for field, value in (("golden_client", "-e sh"), ("golden_client", "a b"), ("image", "a/b"),
                         ("ip_method", "magic"), ("post_install", "explode"), ("port", 0),
                         ("excludes", ["a\nb"])):
        with pytest.raises(ImageError):
            g.check_options(g.Options(**{**ok.__dict__, field: value}))


def _siclient():
    spec = importlib.util.spec_from_file_location("siclient", SICLIENT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_prepareclient_secrets_paste_safely_after_an_option():
    sc = _siclient()
    made = {sc.new_secret() for _ in range(2000)}
    assert len(made) == 2000
    assert all(len(s) == 32 and s.isalnum() and s.isascii() for s in made)


def test_siclient_is_stdlib_only_and_its_helpers():
    text = SICLIENT.read_text()
    imports = {line.split()[1].split(".")[0] for line in text.splitlines()
               if line.startswith(("import ", "from "))}
    import sys
    assert imports <= set(sys.stdlib_module_names), imports - set(sys.stdlib_module_names)
    sc = _siclient()
    assert sc.disk_file_name("/dev/cciss/c0d0") == "cciss_c0d0" and sc.disk_file_name("/dev/sda") == "sda"
    mounts = "/dev/x /gold ext4 rw 0 0\ntmpfs /gold/mnt/a\\040b tmpfs rw 0 0\nproc /proc proc rw 0 0\n"
    assert sc.mounts_under("/gold", mounts) == "/dev/x / ext4 rw 0 0\ntmpfs /mnt/a\\040b tmpfs rw 0 0\n"
    assert sc.mounts_under("/", mounts) == mounts
    assert sc.normalise_single_dash(["-server", "x", "-y"]) == ["--server", "x", "-y"]
    assert sc.list_disks('{"blockdevices": [{"name": "sda", "type": "disk"}, {"name": "loop0", "type": "loop"},'
                         ' {"name": "nvme0n1", "type": "disk", "path": "/dev/nvme0n1"}]}') == ["/dev/sda", "/dev/nvme0n1"]


def test_siclient_backs_up_what_it_replaces(tmp_path, capsys):
    sc = _siclient()
    p = tmp_path / "etc/x"
    sc.write_file(str(p), "one\n")
    sc.write_file(str(p), "two\n")
    sc.write_file(str(p), "three\n")
    assert p.read_text() == "three\n"
    assert (tmp_path / "etc/x.beforesystemimager").read_text() == "one\n"  # the state before SystemImager
    out = capsys.readouterr().out
    assert f"Creating {p}" in out and f"Backed up {p}" in out and f"Updating {p}" in out


def test_http_serves_the_client_program(tmp_path):
    from aiohttp.test_utils import TestClient, TestServer
    from appliance.http import build_app
    from appliance.service import Context
    cfg = Config(interface="lo", address=IPv4Address("127.0.0.1"), state_dir=tmp_path)
    ctx = Context(cfg, Store(cfg.db_path))

    async def fetch():
        async with TestClient(TestServer(build_app(ctx))) as client:
            resp = await client.get("/client/siclient.py")
            return resp.status, await resp.read()

    status, body = asyncio.run(fetch())
    assert status == 200 and body == SICLIENT.read_bytes()


def test_the_manuals_spelling_parses():
    from appliance.cli import build_parser, normalise_single_dash
    parser = build_parser()
    for argv in (["getimage", "-golden-client", "gc1", "-image", "web"],
                 ["getimage", "-g", "gc1", "-im", "web", "-ip", "static"]):
        args = parser.parse_args(normalise_single_dash(argv))
        assert (args.golden_client, args.image) == ("gc1", "web")
    assert parser.parse_args(normalise_single_dash(argv)).ip_assignment == "static"


def test_rsync_progress_is_parsed(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(20):
        (src / f"f{i}").write_bytes(os.urandom(100_000))
    seen = []
    status, out, err = g.run_rsync(["rsync", "-a", "--stats", "--info=progress2", f"{src}/", f"{tmp_path / 'dst'}/"],
                                   dict(os.environ, LC_ALL="C"), lambda done, pct: seen.append((done, pct)))
    assert status == 0, err
    assert seen and seen[-1] == (2_000_000, 100), seen[-3:]
    assert g._total_size(out) == 2_000_000
    cmd = g.rsync_command(g.Options("gc", "web"), tmp_path, None, tmp_path / "x", progress=False)
    assert "--info=progress2" not in cmd and "--sparse" in cmd and "-aHAX" in cmd


def test_pull_keeps_directory_times_exact_within_one_second(tmp_path):
    """rsync compares whole seconds by default: a directory whose source time
    falls in the second it is written keeps its write time (failed in CI)."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "etc/si").mkdir(parents=True)
    (src / "etc/si/f").write_text("x\n")
    while time.time() % 1 > 0.5:   # leave half a second for rsync to write in this second
        time.sleep(0.05)
    late_in_this_second = int(time.time()) * 10**9 + 999_000_000
    for d in ("etc/si", "etc"):
        os.utime(src / d, ns=(late_in_this_second, late_in_this_second))
    cmd = g.rsync_command(g.Options("gc", "web"), dst, None, tmp_path / "none", progress=False)
    cmd = [a for a in cmd if not a.startswith("--exclude-from")][:-2] + [f"{src}/", f"{dst}/"]
    status, _out, err = g.run_rsync(cmd, dict(os.environ, LC_ALL="C"), None)
    assert status == 0, err
    for d in ("etc", "etc/si"):
        assert os.stat(dst / d).st_mtime_ns == late_in_this_second, d

"""rsyncd.conf rendering: modules, access, limits; bad rows never reach the file."""
from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from appliance.config import Config, RsyncdConfig, SubnetConfig
from services.rsyncd import render


def cfg(tmp: Path) -> Config:
    return Config(interface="br0", address=IPv4Address("10.5.0.1"), state_dir=tmp / "state",
                  log_dir=tmp / "log", rsyncd=RsyncdConfig(port=8873, max_connections=17),
                  subnets=(SubnetConfig(IPv4Network("10.5.0.0/24")), SubnetConfig(IPv4Network("10.6.0.0/16"))))


def v(image, version, path, state="complete"):
    return {"image": image, "version": version, "path": path, "state": state}


def sections(text: str) -> dict[str, dict[str, str]]:
    out, cur = {"": {}}, ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            cur = line[1:-1]
            out[cur] = {}
        else:
            key, _, value = line.partition("=")
            out[cur][key.strip()] = value.strip()
    return out


def test_modules_globals_and_access(tmp_path):
    c = cfg(tmp_path)
    text = render.render(c, [v("web", 1, "/i/.versions/web/1"), v("web", 2, "/i/.versions/web/2"),
                             v("db", 1, "/i/.versions/db/1"), v("web", 3, "/i/.versions/web/3", "incomplete")],
                         ["10.5.0.9", "192.168.7.7", "bogus"])
    s = sections(text)
    g = s[""]
    assert g["port"] == "8873" and g["address"] == "10.5.0.1"
    assert g["use chroot"] == "yes" and g["numeric ids"] == "yes" and g["read only"] == "yes"
    assert g["max connections"] == "17" and g["lock file"] == str(c.run_dir / "rsyncd.lock")
    assert g["log file"] == str(c.log_dir / "rsyncd.log")
    assert g["pid file"] == str(c.run_dir / "rsyncd.pid")
    assert g["reverse lookup"] == "no", "no DNS lookup of every client (access is by address)"
    # Subnets, a known host outside them, loopback; never a host already inside a subnet twice.
    assert g["hosts allow"].split() == ["10.5.0.0/24", "10.6.0.0/16", "192.168.7.7", "127.0.0.1"]
    assert s["web"]["path"] == "/i/.versions/web/2"          # latest complete
    assert s["web@1"]["path"] == "/i/.versions/web/1"
    assert "web@3" not in s                                   # incomplete: never exported
    assert s["db"]["path"] == "/i/.versions/db/1"
    assert s["scripts"]["path"] == str(c.scripts_dir) and s["boot"]["path"] == str(c.boot_root)


def test_bad_rows_are_left_out(tmp_path):
    text = render.render(cfg(tmp_path), [v("../x", 1, "/a"), v("ok", 1, "/a\n[evil]\npath = /"),
                                         v("a]b", 1, "/b"), v("fine", 1, "/c")])
    s = sections(text)
    assert set(s) == {"", "scripts", "boot", "fine", "fine@1"}
    assert "evil" not in text


def test_no_subnets_means_loopback_only(tmp_path):
    c = Config(interface="lo", address=IPv4Address("127.0.0.1"), state_dir=tmp_path)
    assert sections(render.render(c, []))[""]["hosts allow"] == "127.0.0.1"


def test_write_if_changed_replaces_and_reports_change(tmp_path):
    p = tmp_path / "run/rsyncd.conf"
    assert render.write_if_changed(p, "a\n") is True
    inode = p.stat().st_ino
    assert render.write_if_changed(p, "a\n") is False and p.stat().st_ino == inode
    assert render.write_if_changed(p, "b\n") is True and p.read_text() == "b\n"
    assert p.stat().st_ino != inode  # a new file renamed over: readers see old or new, never half
    assert [x.name for x in p.parent.iterdir()] == ["rsyncd.conf"]

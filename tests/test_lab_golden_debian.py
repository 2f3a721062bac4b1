"""The Debian golden client's recipe: cache naming, tool checks, what the install script sees.

Building the tree needs the mirror and minutes; vm-tests/test_e2e_debian.py
does that. These check the parts that decide whether a cached tree is reused
and how the install script will treat the system.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

from appliance.autoinstall.plan import build_plan
from appliance.lab import golden_debian


def test_the_cache_is_named_by_the_recipe(monkeypatch, tmp_path):
    first = golden_debian.recipe_hash()
    assert golden_debian.recipe_hash() == first
    assert golden_debian.tarball_path().name == f"debian-golden-{first}.tar.zst"
    monkeypatch.setattr(golden_debian, "PACKAGES", golden_debian.PACKAGES + ("openssh-server",))
    assert golden_debian.recipe_hash() != first, "another package list must not reuse the cached tree"
    monkeypatch.undo()
    files = tmp_path / "files"
    shutil.copytree(golden_debian.DEBIAN_FILES, files)
    (files / "si-booted").write_text("#!/bin/sh\necho changed\n")
    monkeypatch.setattr(golden_debian, "DEBIAN_FILES", files)
    assert golden_debian.recipe_hash() != first, "a changed file in the tree must not reuse the cached tree"


def test_a_missing_tool_is_named_with_its_debian_package(monkeypatch):
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, **kw: None if name == "debootstrap" else real(name, **kw))
    with pytest.raises(RuntimeError, match=r"debootstrap not found: install the Debian package\(s\) debootstrap"):
        golden_debian.require_tools()


def test_the_marker_script_is_valid_sh():
    subprocess.run(["sh", "-n", str(golden_debian.DEBIAN_FILES / "si-booted")], check=True)


def test_the_install_script_configures_systemd_networkd_not_ifupdown(tmp_path):
    """The golden system's network files as build() lays them out, read by the planner."""
    root = tmp_path / "image"
    (root / "etc/systemd/network").mkdir(parents=True)
    shutil.copy(golden_debian.DEBIAN_FILES / "20-wired.network", root / "etc/systemd/network")
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    (wants / "systemd-networkd.service").symlink_to("/lib/systemd/system/systemd-networkd.service")
    (root / "etc/hostname").write_text("golden\n")
    plan = build_plan("debian12", root)
    assert plan.net_networkd and not plan.net_ifupdown
    assert plan.golden_hostname == "golden"


def test_the_mirror_is_the_one_this_machines_apt_uses(tmp_path, monkeypatch):
    monkeypatch.delenv("SI_DEBIAN_MIRROR", raising=False)
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    assert golden_debian.host_mirror(apt) == golden_debian.DEFAULT_MIRROR
    (apt / "sources.list").write_text("# deb http://old.example/debian bookworm main\n"
                                      "deb [arch=amd64 signed-by=/k.gpg] http://list.example/debian bookworm main\n")
    assert golden_debian.host_mirror(apt) == "http://list.example/debian"
    (apt / "sources.list.d/debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n")
    assert golden_debian.host_mirror(apt) == "http://mirror.example/debian"
    monkeypatch.setenv("SI_DEBIAN_MIRROR", "http://override.example/debian")
    assert golden_debian.host_mirror(apt) == "http://override.example/debian"

"""Exit statuses scripts can tell apart: 0 ok, 1 the operation failed, 2 bad usage or input,
3 no appliance answers (README, "Commands")."""
from __future__ import annotations

import socket

import pytest

from appliance.cli import main
from appliance.lab.configs import lab_toml


def _cfg(tmp_path, **kw):
    path = tmp_path / "a.toml"
    path.write_text(lab_toml(tmp_path, **kw))
    return str(path)


def _unused_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_each_kind_of_failure_has_its_status(tmp_path, capsys):
    cfg = _cfg(tmp_path, http_port=_unused_loopback_port())
    assert main(["hosts", "set", "node1", "--config", cfg, "--mac", "52:54:00:aa:00:01"]) == 0
    with pytest.raises(SystemExit) as usage:
        main(["hosts", "set", "--config", cfg])                       # no host name: usage
    assert usage.value.code == 2
    assert main(["hosts", "set", "bad name!", "--config", cfg]) == 2    # input
    assert main(["hosts", "reinstall", "ghost", "--config", cfg]) == 1  # a host that is not there
    assert main(["images", "show", "nosuch", "--config", cfg]) == 1
    capsys.readouterr()
    assert main(["status", "--config", cfg]) == 3                      # nothing listens on that port
    assert "no appliance answers" in capsys.readouterr().err


def test_one_spelling_of_a_version_everywhere(tmp_path, capsys):
    """NAME:N, as updateclient and pushupdate take it, also in si images (NAME@N, the rsync
    module's name, is read too)."""
    from appliance.store import Store
    cfg = _cfg(tmp_path)
    store = Store(tmp_path / "state" / "appliance.db")
    store.add_image_version("web", 1, str(tmp_path / "web1"))
    store.finish_image_version("web", 1, 4096)
    capsys.readouterr()
    for spelling in ("web:1", "web@1"):
        assert main(["images", "show", spelling, "--config", cfg]) == 0
        out = capsys.readouterr().out
        fields = dict(line.split(":", 1) for line in out.splitlines())
        assert fields["image"].strip() == "web:1" and fields["state"].strip() == "complete (current)", out
    assert main(["images", "show", "web:9", "--config", cfg]) == 1
    assert "web:9: no such version" in capsys.readouterr().err
    assert main(["images", "show", "web:x", "--config", cfg]) == 2


def test_images_chroot_errors_name_the_command(tmp_path, capsys):
    """chroot's own COMMAND argument once took the top-level parser's name for the command:
    its errors read "si []: ..." or "si ['ls']: ..."."""
    cfg = _cfg(tmp_path)
    for argv in (["images", "chroot", "nosuch"], ["images", "chroot", "nosuch", "ls", "-la"]):
        capsys.readouterr()
        assert main([*argv[:2], "--config", cfg, *argv[2:]]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("si images: image nosuch") and "\n" not in err, err


def test_pushupdate_errors_name_pushupdate(tmp_path, capsys):
    """pushupdate's --command once took the top-level parser's name: errors read "si updateclient: ..."."""
    cfg = _cfg(tmp_path)
    capsys.readouterr()
    assert main(["pushupdate", "--config", cfg, "--image", "nosuch", "--hosts", "node*"]) in (1, 2)
    err = capsys.readouterr().err.strip()
    assert err.startswith("si pushupdate: "), err

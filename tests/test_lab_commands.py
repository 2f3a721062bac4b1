"""A lab step that fails says what failed and why: the child's own message, not only its status."""
from __future__ import annotations

import pytest

from appliance.lab.netns import CommandFailed, run_checked


def test_a_failing_command_carries_its_own_last_words():
    with pytest.raises(CommandFailed) as info:
        run_checked(["sh", "-c", "echo working; echo 'W: retrying' >&2; echo 'E: Unable to fetch linux-image' >&2; exit 3"])
    assert str(info.value).endswith("exit 3 exited with 3: E: Unable to fetch linux-image")
    assert info.value.returncode == 3 and "working" in info.value.stdout


def test_a_command_inside_a_namespace_is_named_without_the_ip_netns_prefix():
    err = CommandFailed(2, ["ip", "netns", "exec", "si-1-app", "si", "mkbootserver"], "", "no boot root\n")
    assert str(err) == "si mkbootserver exited with 2: no boot root"


def test_unchecked_runs_return_the_failure():
    assert run_checked(["sh", "-c", "exit 4"], check=False).returncode == 4


def test_a_finished_demo_keeps_only_logs_consoles_and_config(tmp_path):
    from appliance.lab.demo import prune_to_logs
    (tmp_path / "state/images/demo_v1/usr/bin").mkdir(parents=True)
    (tmp_path / "state/images/demo_v1/usr/bin/busybox").write_bytes(b"x" * 4096)
    (tmp_path / "state/images/demo_v1/bin").symlink_to("/")            # an image's link out: not followed
    (tmp_path / "log").mkdir()
    (tmp_path / "log/installs.log").write_text("node1 succeeded\n")
    (tmp_path / "node1.disk.raw").write_bytes(b"\0" * 65536)
    (tmp_path / "node1.console.log").write_text("SI-GOLDEN-BOOTED\n")
    (tmp_path / "appliance.toml").write_text("interface = 'br0'\n")
    kept = prune_to_logs(tmp_path)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left == ["appliance.toml", "log", "log/installs.log", "node1.console.log"]
    assert kept == sum((tmp_path / p).stat().st_size for p in left if (tmp_path / p).is_file())
    assert __import__("os").path.isdir("/usr")                         # nothing outside was touched

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

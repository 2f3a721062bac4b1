"""si events: the store's events, one host's or all, as lines or JSON, and followed live."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.lab.configs import lab_toml
from appliance.store import Store

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(60)
def test_events_of_one_host_and_followed(tmp_path, capsys):
    cfg = tmp_path / "a.toml"
    cfg.write_text(lab_toml(tmp_path))
    (tmp_path / "state").mkdir()
    store = Store(tmp_path / "state" / "appliance.db")
    store.event("dhcp", "pxe", "PXE boot: bios loader undionly.kpxe, address 10.77.0.11", host="node1")
    store.event("dhcp", "lease", "lease 10.77.0.12 to 52:54:00:00:00:02", host="node2")
    store.event("install", "start", "install of web started", host="node1")
    store.event("images", "getimage", "web:1 from 10.77.0.253")
    assert main(["events", "--config", str(cfg), "--host", "node1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [l.split("\t")[1:4] for l in lines] == [["dhcp", "pxe", "node1"], ["install", "start", "node1"]]
    assert main(["events", "--config", str(cfg), "--json", "--limit", "2"]) == 0
    records = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert [r["kind"] for r in records] == ["start", "getimage"] and records[1]["host"] is None

    follow = subprocess.Popen([sys.executable, "-m", "appliance.cli", "events", "--config", str(cfg), "--follow",
                               "--host", "node2", "--json"], stdout=subprocess.PIPE, text=True, cwd=REPO,
                              env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert json.loads(follow.stdout.readline())["kind"] == "lease"        # what was there
        store.event("install", "succeeded", "install of web succeeded after 40 s, 60.0 MiB", host="node2")
        store.event("install", "start", "install of web started", host="node1")     # not node2's
        store.event("install", "start", "install of web started", host="node2")
        assert [json.loads(follow.stdout.readline())["kind"] for _ in range(2)] == ["succeeded", "start"]
    finally:
        follow.terminate()
        follow.wait(timeout=10)

"""si console token/url and si logs HOST (--follow), against a real store."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from appliance.cli import main
from appliance.console import token
from appliance.lab.configs import lab_toml
from appliance.store import Store
from appliance.store.records import Host

REPO = Path(__file__).resolve().parent.parent


def setup(tmp_path):
    cfg = tmp_path / "a.toml"
    cfg.write_text(lab_toml(tmp_path))
    store = Store(tmp_path / "state" / "appliance.db")
    store.upsert_host(Host("node1", mac="52:54:00:00:00:01", image="web"))
    return cfg, store


def test_console_token_and_url(tmp_path, capsys):
    cfg, _ = setup(tmp_path)
    assert main(["console", "token", "--config", str(cfg)]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == token.read(tmp_path / "state"), "the token the appliance checks"
    assert main(["console", "url", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out.strip().endswith(f":8080/#token={printed}")


def test_logs_of_the_newest_run(tmp_path, capsys):
    cfg, store = setup(tmp_path)
    assert main(["logs", "--config", str(cfg), "nosuch"]) == 1
    assert main(["logs", "--config", str(cfg), "node1"]) == 1
    assert "no install or update yet" in capsys.readouterr().err
    old = store.start_install("node1", "web")
    store.update_install(old, log_append="the old run\n", state="succeeded")
    run = store.start_install("node1", "web")
    store.update_install(run, log_append="partitioning\nfailed here\n", state="failed")
    assert main(["logs", "--config", str(cfg), "node1"]) == 1, "a failed run's log exits 1"
    assert capsys.readouterr().out == "partitioning\nfailed here\n"


def test_logs_follow_a_run_and_the_next(tmp_path):
    cfg, store = setup(tmp_path)
    run = store.start_install("node1", "web")
    store.update_install(run, log_append="one\n")
    follow = subprocess.Popen([sys.executable, "-m", "appliance.cli", "logs", "--config", str(cfg), "-f", "node1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                              env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert follow.stdout.readline() == "one\n"
        store.update_install(run, log_append="two\n", state="succeeded")
        assert follow.stdout.readline() == "two\n"
        time.sleep(1)
        second = store.start_install("node1", "web", kind="update")
        store.update_install(second, log_append="update says hi\n")
        assert follow.stdout.readline() == "update says hi\n"
    finally:
        follow.terminate()
        _, err = follow.communicate(timeout=10)
    assert "=== install succeeded" in err and "=== update of web on node1" in err, err

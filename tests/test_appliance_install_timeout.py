"""A machine powered off mid-install stops reporting: its run is marked failed, and the next attempt succeeds."""
from __future__ import annotations

import time
from ipaddress import IPv4Address

from appliance.config import Config, HttpConfig
from appliance.http import HttpService
from appliance.service import Context
from appliance.store import Store
from appliance.store.records import Host
from support.dns_harness import ServiceThread, free_port
from support.http_app import Server
from test_appliance_http import post, server  # noqa: F401  (server: the fixture)


def test_a_silent_run_is_failed_and_the_next_boot_installs(server):  # noqa: F811
    store = server.ctx.store
    store.upsert_host(Host("www1", ip="127.0.0.1", image="img"))
    assert post(server.url("/api/installs/www1"), b'{"phase": "start"}')[0] == 200
    assert post(server.url("/api/installs/www1"), b'{"phase": "rsync", "percent": 40}')[0] == 200
    first = store.current_install("www1")
    assert store.fail_silent_installs(60) == [], "a run that reported just now is not silent"
    time.sleep(0.3)
    assert [r.id for r in store.fail_silent_installs(0.2)] == [first.id]
    failed = store.current_install("www1")
    assert failed.state == "failed" and failed.finished and "no report for 0 s: marked failed" in failed.log
    assert store.host("www1").netboot == "install", "it will PXE-boot into the installer again"
    assert post(server.url("/api/installs/www1"), b'{"phase": "start"}')[0] == 200
    assert post(server.url("/api/installs/www1"), b'{"state": "succeeded", "percent": 100}')[0] == 200
    second = store.current_install("www1")
    assert second.id != first.id and second.state == "succeeded"
    assert store.host("www1").netboot == "local"


def test_the_http_service_fails_silent_runs_by_itself(tmp_path):
    cfg = Config(interface="lo", address=IPv4Address("127.0.0.1"), state_dir=tmp_path / "state",
                 log_dir=tmp_path / "log", http=HttpConfig(port=free_port(), install_timeout=0.4))
    cfg.state_dir.mkdir(parents=True)
    ctx = Context(cfg, Store(cfg.db_path))
    run = ctx.store.start_install("node1", "img")
    service = HttpService(ctx)
    runner = ServiceThread(service).start()
    try:
        deadline = time.time() + 5
        while time.time() < deadline and ctx.store.current_install("node1").state == "running":
            time.sleep(0.05)
        assert ctx.store.current_install("node1").state == "failed"
        assert service.health().counters["installs_timed_out"] == 1 and ctx.store.current_install("node1").id == run
    finally:
        runner.stop()

"""The HTTP API over a real socket: JSON, boot files with Range, progress from the right IP only."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import urllib.error
import urllib.request
from ipaddress import IPv4Address

import pytest
from aiohttp import web

from appliance.config import Config, HttpConfig
from appliance.http import build_app
from appliance.service import Context
from appliance.store import Store
from appliance.store.records import Host
from support.http_app import Server


@pytest.fixture
def server(tmp_path):
    cfg = Config(interface="lo", address=IPv4Address("127.0.0.1"), state_dir=tmp_path / "state",
                 log_dir=tmp_path / "log", http=HttpConfig(port=1))
    cfg.boot_root.mkdir(parents=True)
    cfg.scripts_dir.mkdir(parents=True)
    ctx = Context(cfg, Store(cfg.db_path))
    srv = Server(ctx)
    yield srv
    srv.close()


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def post(url, body: bytes):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_json_api(server):
    store = server.ctx.store
    store.upsert_host(Host("www1", mac="52:54:00:00:00:01", ip="10.0.0.11", image="img"))
    status, body, headers = get(server.url("/api/hosts"))
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert json.loads(body)[0]["hostname"] == "www1"
    for path in ("/api/leases", "/api/images", "/api/installs"):
        status, body, _ = get(server.url(path))
        assert status == 200 and json.loads(body) == []
    status, body, _ = get(server.url("/api/health"))
    assert status == 200 and json.loads(body)["ok"] is True


def test_boot_files_with_range_and_safety(server, tmp_path):
    root = server.ctx.config.boot_root
    data = os.urandom(100_000)
    (root / "systemimager").mkdir()
    (root / "systemimager" / "kernel").write_bytes(data)
    (tmp_path / "secret").write_text("no")
    os.symlink(tmp_path / "secret", root / "escape")
    status, body, _ = get(server.url("/boot/systemimager/kernel"))
    assert status == 200 and body == data
    status, body, headers = get(server.url("/boot/systemimager/kernel"), {"Range": "bytes=1000-1999"})
    assert status == 206 and body == data[1000:2000]
    assert headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
    assert get(server.url("/boot/escape"))[0] == 403
    assert get(server.url("/boot/systemimager"))[0] == 403
    assert get(server.url("/boot/missing"))[0] == 404
    # A raw request with '..' (urllib would normalise it away).
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"GET /boot/../appliance.db HTTP/1.0\r\n\r\n")
        reply = s.recv(100)
    assert b" 200 " not in reply.split(b"\r\n")[0]


def test_dynamic_files_come_before_disk(server):
    server.ctx.dynamic_files.append(lambda path, ip: b"#!ipxe\nexit\n" if path == "ipxe/x.ipxe" else None)
    status, body, _ = get(server.url("/boot/ipxe/x.ipxe"))
    assert status == 200 and body == b"#!ipxe\nexit\n"


def test_progress_only_from_the_hosts_ip(server):
    store = server.ctx.store
    store.upsert_host(Host("www1", ip="127.0.0.1", image="img"))
    store.upsert_host(Host("www2", ip="10.0.0.12", image="img"))
    assert post(server.url("/api/installs/www2"), b'{"phase": "rsync"}')[0] == 403
    assert post(server.url("/api/installs/nobody"), b'{"phase": "rsync"}')[0] == 404
    assert post(server.url("/api/installs/www1"), b'not json')[0] == 400
    assert post(server.url("/api/installs/www1"), b'{"percent": 170}')[0] == 400
    assert post(server.url("/api/installs/www1"), b'{"phase": "start", "log": "booted\\n"}')[0] == 200
    assert post(server.url("/api/installs/www1"),
                b'{"phase": "rsync", "percent": 55.5, "bytes": 1234}')[0] == 200
    run = store.current_install("www1")
    assert (run.phase, run.percent, run.bytes, run.state) == ("rsync", 55.5, 1234, "running")
    assert store.host("www1").netboot == "install"
    assert post(server.url("/api/installs/www1"), b'{"state": "succeeded", "percent": 100}')[0] == 200
    assert store.host("www1").netboot == "local", "netboot-once: installed hosts boot their disk"
    assert store.current_install("www2") is None
    assert "booted" in (server.ctx.config.log_dir / "www1.log").read_text()


def test_out_of_range_and_deep_reports_are_400_and_change_nothing(server):
    store = server.ctx.store
    store.upsert_host(Host("www1", ip="127.0.0.1", image="img"))
    assert post(server.url("/api/installs/www1"), b'{"phase": "rsync", "bytes": 10}')[0] == 200
    for body in (b'{"bytes": 9223372036854775808}', b"[" * 100_000 + b"]" * 100_000):
        status, answer = post(server.url("/api/installs/www1"), body)
        assert status == 400, answer
    run = store.current_install("www1")
    assert (run.phase, run.bytes, run.state) == ("rsync", 10, "running")
    assert len(store.installs()) == 1, "a refused report starts no run"

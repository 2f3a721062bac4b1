"""The console's routes over a real socket: per-item JSON, host states, the operator token
that actions need, and the two live streams (server-sent events)."""
from __future__ import annotations

import http.client
import json
import os
import re
import socket
import stat
import threading
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from appliance.config import Config, HttpConfig
from appliance.console import sse, token, views
from appliance.service import Context
from appliance.store import Store
from appliance.store.records import Host
from support.http_app import Server

MAC = "52:54:00:00:00:01"


@pytest.fixture
def server(tmp_path):
    cfg = Config(interface="lo", address=IPv4Address("127.0.0.1"), state_dir=tmp_path / "state",
                 log_dir=tmp_path / "log", http=HttpConfig(port=1))
    ctx = Context(cfg, Store(cfg.db_path))
    ctx.store.add_image_version("web", 1, str(cfg.images_dir / "web" / "1"))
    ctx.store.finish_image_version("web", 1, 5 * 2**20)
    ctx.store.upsert_host(Host("node1", mac=MAC, ip="10.0.0.11", image="web", netboot="install"))
    srv = Server(ctx)
    yield srv
    srv.close()


def request(server, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if r.getheader("Content-Type", "").startswith("application/json")
                          else data), dict(r.getheaders())
    finally:
        conn.close()


def get(server, path):
    return request(server, "GET", path)


def bearer(server):
    return {"Authorization": "Bearer " + token.ensure(server.ctx.config.state_dir)}


def test_page_and_its_assets_come_from_the_appliance_alone(server):
    status, page, headers = get(server, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'src="/console.js"' in page and b'href="/console.css"' in page
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    for name in ("console.js", "console.css"):
        status, body, _ = get(server, f"/{name}")
        assert status == 200 and len(body) > 500
    static = Path(__file__).resolve().parents[1] / "appliance" / "console" / "static"
    for f in static.iterdir():
        assert not re.search(r"https?://", f.read_text()), f"{f.name} loads something from elsewhere"
    status, _, headers = get(server, "/monitor")
    assert (status, headers["Location"]) == (302, "/#installs"), "the old monitor address leads to the console"


def test_a_host_goes_from_unknown_to_installed(server):
    store = server.ctx.store
    store.upsert_host(Host("node2", mac="52:54:00:00:00:02"))
    state = lambda name: get(server, f"/api/hosts/{name}")[1]["state"]
    assert state("node2") == "unknown", "no image: nothing would be installed"
    assert state("node1") == "assigned"
    run = store.start_install("node1", "web")
    store.update_install(run, phase="rsync", percent=40)
    assert state("node1") == "installing"
    store.update_install(run, state="failed")
    assert state("node1") == "failed"
    again = store.start_install("node1", "web")
    store.update_install(again, state="succeeded", percent=100)
    store.set_netboot("node1", "local")
    assert state("node1") == "installed"
    update = store.start_install("node1", "web", kind="update")
    assert state("node1") == "installed", "an update does not make an installed host 'installing'"
    store.update_install(update, state="failed")
    status, view, _ = get(server, "/api/hosts/node1")
    assert view["next_boot"] and view["last_install"]["id"] == again and "log" not in view["last_install"]
    assert [r["id"] for r in view["runs"]] == [update, again, run]
    assert get(server, "/api/hosts/nosuch")[0] == 404


def test_an_install_log_is_read_from_an_offset(server):
    store = server.ctx.store
    assert get(server, "/api/installs/node1")[0] == 404
    run = store.start_install("node1", "web")
    store.update_install(run, log_append="partitioning\n")
    status, first, _ = get(server, "/api/installs/node1")
    assert first["log"] == "partitioning\n" and first["log_size"] == 13
    store.update_install(run, log_append="rsync\n")
    assert get(server, "/api/installs/node1?offset=13")[1]["log"] == "rsync\n"
    assert get(server, "/api/installs/node1?offset=999")[1]["log"] == "partitioning\nrsync\n", \
        "an offset past the end starts over"
    assert get(server, "/api/installs/node1?offset=x")[0] == 400
    store.update_install(run, log_append="x" * 5000 + "\nlast words\n")
    listed = get(server, "/api/installs")[1]
    assert listed[0]["hostname"] == "node1" and "log" not in listed[0], "the list carries no logs"
    # The list reads only each log's tail, yet says the whole size and the last line.
    assert (listed[0]["log_size"], listed[0]["last_line"]) == (19 + 5000 + 12, "last words")


def test_images_say_their_versions_and_users(server):
    status, image, _ = get(server, "/api/images/web")
    assert status == 200 and image["hosts"] == ["node1"] and image["version_list"][0]["size"] == 5 * 2**20
    assert get(server, "/api/images/nosuch")[0] == 404


def test_actions_need_the_operator_token(server):
    store = server.ctx.store
    store.set_netboot("node1", "local")
    events_before = len(store.events(100))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        status, body, _ = request(server, "POST", "/api/hosts/node1/reinstall", {}, headers)
        assert status == 401 and "si console token" in body["error"]
    assert store.host("node1").netboot == "local" and len(store.events(100)) == events_before
    status, body, _ = request(server, "POST", "/api/hosts/node1/reinstall", {}, bearer(server))
    assert status == 200 and body["host"]["state"] == "assigned"
    assert store.host("node1").netboot == "install"
    assert store.events(1)[0]["kind"] == "reinstall" and "console" in store.events(1)[0]["detail"]
    assert request(server, "POST", "/api/hosts/node1/local", {}, bearer(server))[0] == 200
    assert store.host("node1").netboot == "local"
    assert request(server, "POST", "/api/hosts/nosuch/local", {}, bearer(server))[0] == 404


def test_assigning_an_image_checks_it(server):
    store = server.ctx.store
    status, body, _ = request(server, "POST", "/api/hosts/node1/image", {"image": "nosuch"}, bearer(server))
    assert status == 404 and "no image 'nosuch'" in body["error"]
    for bad in ({"image": "../etc"}, {"image": 3}, [], "x"):
        assert request(server, "POST", "/api/hosts/node1/image", bad, bearer(server))[0] == 400
    assert store.host("node1").image == "web", "a refused assignment changes nothing"
    store.add_image_version("db", 1, "/x")
    assert request(server, "POST", "/api/hosts/node1/image", {"image": "db"}, bearer(server))[0] == 200
    assert store.host("node1").image == "db"


def test_the_token_file_is_made_once_and_readable_by_root_only(tmp_path):
    made = token.ensure(tmp_path)
    assert token.ensure(tmp_path) == made and len(made) >= 24
    assert stat.S_IMODE(os.stat(token.path(tmp_path)).st_mode) == 0o600
    assert token.authorised(f"Bearer {made}", made) and not token.authorised(f"Bearer {made}x", made)
    assert not token.authorised(None, made) and not token.authorised("Bearer ", None)


class Stream:
    """A server-sent events stream read in a thread; frames() waits for those matching."""

    def __init__(self, server, path, headers=None):
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        self.conn.request("GET", path, headers=headers or {})
        self.response = self.conn.getresponse()
        assert self.response.getheader("Content-Type") == "text/event-stream"
        self.data = b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            while chunk := self.response.read1(65536):
                self.data += chunk
        except Exception:
            pass

    def frames(self, want, seconds=10):
        deadline = time.time() + seconds
        while time.time() < deadline:
            frames = sse.parse(self.data.rsplit(b"\n\n", 1)[0] + b"\n\n") if b"\n\n" in self.data else []
            if want(frames):
                return frames
            time.sleep(0.1)
        raise AssertionError(f"not in the stream within {seconds} s: {self.data[-2000:]!r}")

    def close(self):
        self.conn.sock.shutdown(socket.SHUT_RDWR)    # ends the reader's recv at once
        self.thread.join(5)
        self.conn.close()


def test_the_stream_sends_new_events_and_changed_rows(server):
    store = server.ctx.store
    store.event("dhcp", "lease", "before the page opened", host="node1")
    stream = Stream(server, "/api/stream")
    try:
        time.sleep(0.7)
        store.event("dhcp", "pxe", "PXE boot: bios loader undionly.kpxe", host="node1")
        run = store.start_install("node1", "web")
        store.update_install(run, phase="rsync", percent=12)
        frames = stream.frames(lambda f: any(e == "host" and d["state"] == "installing" for e, _, d in f))
        events = [d for e, _, d in frames if e == "event"]
        assert [d["kind"] for d in events] == ["pxe"], "only what happened after it opened"
        assert any(e == "install" and d["percent"] == 12 for e, _, d in frames)
        store.delete_host("node1")
        stream.frames(lambda f: any(e == "host" and d.get("deleted") for e, _, d in f))
    finally:
        stream.close()
    resumed = Stream(server, "/api/stream", {"Last-Event-ID": str(events[0]["id"] - 1)})
    try:
        resumed.frames(lambda f: [d["kind"] for e, _, d in f if e == "event"] == ["pxe"])
    finally:
        resumed.close()


def test_the_log_stream_follows_a_run_and_resumes(server):
    store = server.ctx.store
    run = store.start_install("node1", "web")
    store.update_install(run, log_append="one\n")
    stream = Stream(server, "/api/installs/node1/log")
    try:
        stream.frames(lambda f: any(e == "log" and d["text"] == "one\n" for e, _, d in f))
        store.update_install(run, log_append="two\n", percent=50)
        frames = stream.frames(lambda f: any(e == "log" and d["text"] == "two\n" for e, _, d in f))
        assert "".join(d["text"] for e, _, d in frames if e == "log") == "one\ntwo\n"
        assert [i for e, i, d in frames if e == "log"][-1] == f"{run}:8"
        second = store.start_install("node1", "web")
        store.update_install(second, log_append="fresh\n")
        frames = stream.frames(lambda f: any(e == "log" and d["run"] == second for e, _, d in f))
        assert [d["text"] for e, _, d in frames if e == "log" and d["run"] == second] == ["fresh\n"]
    finally:
        stream.close()
    resumed = Stream(server, "/api/installs/node1/log", {"Last-Event-ID": f"{second}:2"})
    try:
        frames = resumed.frames(lambda f: any(e == "log" for e, _, d in f))
        assert [d["text"] for e, _, d in frames if e == "log"] == ["esh\n"]
    finally:
        resumed.close()


def test_an_open_stream_does_not_hold_up_a_stop(tmp_path):
    cfg = Config(interface="lo", address=IPv4Address("127.0.0.1"), state_dir=tmp_path / "state",
                 log_dir=tmp_path / "log")
    srv = Server(Context(cfg, Store(cfg.db_path)))
    stream = Stream(srv, "/api/stream")
    t = time.time()
    srv.close()
    assert time.time() - t < 5
    stream.close()


def test_host_state_rules():
    host = Host("h", image="web")
    assert views.host_state(Host("h"), None) == "unknown"
    assert views.host_state(host, None) == "assigned"
    assert views.host_state(Host("h", netboot="local"), None) == "installed"

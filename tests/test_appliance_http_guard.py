"""Slow and greedy HTTP clients (an independent probe kept 200 slow connections open 30 s, none closed).

RequestClock is checked on its own, then the guard in front of the real app
over real sockets: a dribbled header and an unfinished body are cut at their
deadlines, connections past the per-address cap are refused at once, and a
slow reader of a large file is never cut (its request has fully arrived).
"""
from __future__ import annotations

import socket
import time
from ipaddress import IPv4Address

import pytest

from appliance.config import Config, HttpConfig
from appliance.http_guard import Guard, RequestClock
from appliance.service import Context
from appliance.store import Store
from support.http_app import Server


def test_clock_follows_headers_body_and_pipelining():
    clock = RequestClock(header_timeout=10, body_timeout=60)
    assert (clock.state, clock.deadline) == ("idle", None)
    clock.feed(b"GET / HTTP/1.1\r\nHo", now=100)
    assert (clock.state, clock.deadline) == ("headers", 110)
    clock.feed(b"st: x\r\n\r", now=105)
    assert clock.deadline == 110, "the header deadline runs from the request's first byte"
    clock.feed(b"\n", now=106)
    assert (clock.state, clock.deadline) == ("idle", None)
    clock.feed(b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nab", now=200)
    assert (clock.state, clock.deadline) == ("body", 260)
    clock.feed(b"cdeGET /b HTTP/1.1\r\n", now=201)       # the body ends, a pipelined request begins
    assert (clock.state, clock.deadline) == ("headers", 211)
    clock.feed(b"\r\n", now=202)
    assert clock.state == "idle"


def test_clock_chunked_body_ends_at_the_last_chunk():
    clock = RequestClock(header_timeout=1, body_timeout=2)
    clock.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r", now=0)
    assert (clock.state, clock.deadline) == ("chunked", 2)
    clock.feed(b"\n\r\n", now=1)
    assert clock.state == "idle"


@pytest.fixture
def guarded(tmp_path):
    cfg = Config(interface="lo", address=IPv4Address("127.0.0.1"), state_dir=tmp_path / "state",
                 log_dir=tmp_path / "log", http=HttpConfig(port=1))
    cfg.boot_root.mkdir(parents=True)
    ctx = Context(cfg, Store(cfg.db_path))
    srv = Server(ctx, Guard(header_timeout=0.5, body_timeout=0.5, max_per_client=8))
    yield srv
    srv.close()


def _connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed the connection (reading and dropping any answer), or None."""
    start = time.monotonic()
    sock.settimeout(0.05)
    while time.monotonic() - start < seconds:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - start
        except socket.timeout:
            continue
        except ConnectionResetError:
            return time.monotonic() - start
    return None


def test_a_dribbled_header_is_cut_at_the_deadline(guarded):
    with _connect(guarded) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
        start = time.monotonic()
        closed = False
        while time.monotonic() - start < 3 and not closed:
            try:
                sock.sendall(b"X")                       # slowloris: a byte now and then, never the end
            except (BrokenPipeError, ConnectionResetError):
                closed = True
            closed = closed or _closed_within(sock, 0.2) is not None
        assert closed and time.monotonic() - start < 1.5, "a dribbled header kept its connection"
    assert guarded.guard.counters["slow_requests_closed"] == 1


def test_an_unfinished_body_is_cut_and_a_silent_connection_too(guarded):
    with _connect(guarded) as slow_body, _connect(guarded) as silent:
        slow_body.sendall(b"POST /api/installs/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        assert _closed_within(slow_body, 2) is not None
        assert _closed_within(silent, 2) is not None
    assert guarded.guard.counters["slow_requests_closed"] == 2


def test_connections_past_the_per_client_cap_are_refused_at_once(guarded):
    held = [_connect(guarded) for _ in range(8)]
    try:
        extra = [_connect(guarded) for _ in range(12)]
        assert all(_closed_within(s, 0.3) is not None for s in extra)
        assert guarded.guard.counters["connections_refused"] == 12
        for s in extra:
            s.close()
    finally:
        for s in held:
            s.close()
    time.sleep(0.2)
    with _connect(guarded) as sock:                   # the cap is per open connection, not a ban
        sock.sendall(b"GET /api/images HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(100).startswith(b"HTTP/1.1 200")


def test_a_slow_reader_of_a_large_file_is_not_cut(guarded):
    data = bytes(range(256)) * (8 * 1024)               # 2 MiB
    (guarded.ctx.config.boot_root / "big.bin").write_bytes(data)
    got = bytearray()
    with _connect(guarded) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"GET /boot/big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        sock.settimeout(5)
        start = time.monotonic()
        while chunk := sock.recv(16 * 1024):
            got += chunk
            time.sleep(0.01)
        assert time.monotonic() - start > 1.0, "read fast enough to miss the point: past both deadlines"
    assert got.endswith(data) and got.startswith(b"HTTP/1.1 200")
    assert guarded.guard.counters.get("slow_requests_closed", 0) == 0

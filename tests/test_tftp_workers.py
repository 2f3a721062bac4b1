"""Transfers in worker processes: handed over, spread, reported, and survived when a worker dies."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from services.tftp import packet as P
from services.tftp.engine import Limits
from support.tftp import RawClient, ServerThread, need, wait_for


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    base = tmp_path_factory.mktemp("tftp-workers")
    (base / "medium").write_bytes(os.urandom(1_000_003))
    (base / "big").write_bytes(os.urandom(20_000_000))
    return base


def sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def curl(port: int, name: str, out) -> None:
    need("curl")
    subprocess.run(["curl", "-sS", "--tftp-blksize", "1468", f"tftp://127.0.0.1:{port}/{name}", "-o", str(out)],
                   check=True, timeout=60)


def live_workers(server: ServerThread) -> list[subprocess.Popen]:
    return [w.proc for w in server.server.pool.workers if w.proc.poll() is None]


def test_files_are_sent_by_worker_processes(root, tmp_path):
    server = ServerThread(root, workers=2)
    try:
        assert len(live_workers(server)) == 2
        curl(server.port, "medium", tmp_path / "out")
        assert sha(tmp_path / "out") == sha(root / "medium")
        assert wait_for(lambda: server.counters["sessions_complete"] == 1), "the worker's report never came"
        c = server.counters
        assert c["handed_to_workers"] == 1 and c["sessions_active"] == 0
        assert c["data_sent"] == 1_000_003 // 1468 + 1 and c["bytes_sent"] == 1_000_003
    finally:
        server.stop()


def test_without_workers_everything_stays_in_process(root, tmp_path):
    server = ServerThread(root, workers=0)
    try:
        assert server.server.pool is None
        curl(server.port, "medium", tmp_path / "out")
        assert sha(tmp_path / "out") == sha(root / "medium")
        assert wait_for(lambda: server.counters["sessions_complete"] == 1)
        assert server.counters["handed_to_workers"] == 0
    finally:
        server.stop()


def test_sessions_go_to_the_least_busy_worker(root):
    server = ServerThread(root, workers=2, limits=Limits(timeout=5.0))
    clients = [RawClient(server.port) for _ in range(4)]
    try:
        for c in clients:
            c.rrq("big")
            assert c.recv().block == 1          # held open: no ACK yet
        assert sorted(len(w.sessions) for w in server.server.pool.workers) == [2, 2]
    finally:
        for c in clients:
            c.close()
        server.stop()


def test_a_worker_that_dies_is_replaced_and_its_transfer_counted_failed(root, tmp_path):
    server = ServerThread(root, workers=2, limits=Limits(timeout=5.0))
    c = RawClient(server.port)
    try:
        c.rrq("big")
        assert c.recv().block == 1
        holder = next(w for w in server.server.pool.workers if w.sessions)
        os.kill(holder.proc.pid, signal.SIGKILL)
        assert wait_for(lambda: server.counters["sessions_failed"] == 1), "the lost transfer was not counted"
        assert wait_for(lambda: len(live_workers(server)) == 2), "no replacement worker"
        assert holder.proc.pid not in [p.pid for p in live_workers(server)]
        assert server.counters["sessions_active"] == 0
        # The client retries with a new request: it is served in full.
        curl(server.port, "medium", tmp_path / "out")
        assert sha(tmp_path / "out") == sha(root / "medium")
    finally:
        c.close()
        server.stop()


def test_a_new_request_from_a_moving_clients_port_supersedes_its_transfer(root):
    server = ServerThread(root, workers=1, limits=Limits(timeout=5.0))
    c = RawClient(server.port)
    try:
        c.rrq("big")
        assert c.recv().block == 1
        c.ack(1)
        assert c.recv().block == 2
        assert wait_for(lambda: next(iter(server.server.sessions.values())).moving), "no 'moving' report"
        c.rrq("medium")                         # the same port asks again: a new transfer
        reply = c.recv()
        while isinstance(reply, P.Data) and reply.block != 1:
            reply = c.recv()                    # a block of the old transfer may still be on its way
        assert isinstance(reply, P.Data) and reply.block == 1
        assert wait_for(lambda: server.counters["superseded"] == 1 and server.counters["sessions_started"] == 2)
    finally:
        c.close()
        server.stop()


def test_stopping_the_server_ends_its_workers(root):
    server = ServerThread(root, workers=2)
    procs = live_workers(server)
    c = RawClient(server.port)
    c.rrq("big")
    assert c.recv().block == 1
    server.stop()
    c.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(p.poll() is None for p in procs):
        time.sleep(0.05)
    assert all(p.poll() is not None for p in procs), "a worker outlived its server"


@pytest.mark.parametrize("workers", [0, 1])
def test_a_client_that_goes_away_ends_its_session_at_once(root, workers):
    """Session sockets are connected: the kernel's 'port unreachable' ends the transfer
    at the next retransmission, instead of after every retry has timed out (3.4 s here)."""
    server = ServerThread(root, workers=workers, limits=Limits(timeout=0.2, max_timeout=1.0, retries=5))
    c = RawClient(server.port)
    try:
        c.rrq("big")
        assert c.recv().block == 1
        c.close()
        assert wait_for(lambda: server.counters["sessions_active"] == 0, 1.5), "the session outlived its client"
        counters = server.counters
        assert counters["client_errors"] == 1 and counters["sessions_timeout"] == 0
        assert counters["retransmits"] <= 1
    finally:
        server.stop()


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = open(f"/proc/{entry}/status").read()
            except OSError:
                continue
            if f"\nPPid:\t{pid}\n" in status:
                found.append(int(entry))
    return found


def test_workers_do_not_outlive_a_killed_appliance(root):
    """No orphans: a worker ends when its control socket's other end goes (SIGKILL included)."""
    proc = subprocess.Popen([sys.executable, "-m", "services.tftp.server", str(root), "--port", "0", "--workers", "2"],
                            stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        assert proc.stdout.readline().startswith("listening on")
        workers = children(proc.pid)
        assert len(workers) == 2, workers
    finally:
        proc.kill()
        proc.wait()

    def alive(pid: int) -> bool:       # gone, or a zombie waiting for its new parent to reap it
        try:
            return "State:\tZ" not in open(f"/proc/{pid}/status").read()
        except OSError:
            return False

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(w) for w in workers):
        time.sleep(0.05)
    assert not [w for w in workers if alive(w)], "a worker outlived the killed server"


def test_a_start_the_worker_cannot_run_is_reported_and_leaks_nothing(root):
    """In process, over a socketpair: a hand-over whose limits the engine refuses."""
    import json
    import socket

    from services.tftp.worker import Worker
    appliance, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    worker = Worker(worker_end)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    fd = os.open(root / "medium", os.O_RDONLY)
    open_before = len(os.listdir("/proc/self/fd"))
    socket.send_fds(appliance, [json.dumps({"t": "start", "sid": 7, "peer": ["127.0.0.1", 9], "size": 10,
                                            "options": {}, "limits": {"no_such_limit": 1}}).encode()],
                    [udp.fileno(), fd])
    udp.close()
    os.close(fd)
    worker.on_control()
    report = json.loads(appliance.recv(65536))
    assert report["t"] == "end" and report["sid"] == 7 and report["outcome"] == "internal error"
    assert report["counters"]["sessions_failed"] == 1 and not worker.sessions
    assert len(os.listdir("/proc/self/fd")) == open_before - 2, "the handed-over descriptors leaked"
    appliance.close()
    worker_end.close()
    worker.plane.stop()


def test_each_transfer_runs_in_a_process_of_its_own(root):
    """The worker forks a child per transfer (forked.py) and keeps none once they end."""
    server = ServerThread(root, workers=1, limits=Limits(timeout=0.2, max_timeout=0.4, retries=2))
    clients = [RawClient(server.port) for _ in range(2)]
    try:
        worker = live_workers(server)[0]
        for c in clients:
            c.rrq("big")
            assert c.recv().block == 1          # held open: no ACK
        assert len(children(worker.pid)) == 2
        for c in clients:
            c.close()
        assert wait_for(lambda: server.counters["sessions_active"] == 0, 5)
        assert wait_for(lambda: not children(worker.pid), 5), "a transfer's process outlived its transfer"
    finally:
        server.stop()


def test_a_transfer_process_that_dies_is_counted_failed_and_its_worker_goes_on(root, tmp_path):
    server = ServerThread(root, workers=1, limits=Limits(timeout=5.0))
    c = RawClient(server.port)
    try:
        worker = live_workers(server)[0]
        c.rrq("big")
        assert c.recv().block == 1
        (child,) = children(worker.pid)
        os.kill(child, signal.SIGKILL)
        assert wait_for(lambda: server.counters["sessions_failed"] == 1), "the lost transfer was not counted"
        assert server.counters["sessions_active"] == 0 and live_workers(server) == [worker]
        curl(server.port, "medium", tmp_path / "out")
        assert sha(tmp_path / "out") == sha(root / "medium")
    finally:
        c.close()
        server.stop()


@pytest.mark.parametrize("workers", [0, 1])
def test_a_stream_of_duplicate_acks_does_not_postpone_the_retransmission(root, workers):
    """The forked loop's timer is the socket's receive timeout: junk must not keep restarting it."""
    server = ServerThread(root, workers=workers, limits=Limits(timeout=0.6, max_timeout=0.6, retries=5))
    c = RawClient(server.port)
    try:
        c.rrq("big")
        first = c.recv()
        assert first.block == 1
        sent_at, again = time.monotonic(), None
        while again is None and time.monotonic() - sent_at < 3.0:
            c.ack(0)                            # a duplicate: never answered
            again = c.recv_or_none(0.15)
        # Duplicates kept coming for five timeouts: a timer they restarted would never have fired.
        assert again is not None and again.block == 1, "no retransmission while duplicates kept coming"
    finally:
        c.close()
        server.stop()


def test_past_its_process_cap_a_worker_runs_transfers_on_its_own_loop(root, monkeypatch):
    """In process, over a socketpair: one transfer gets a process, the next one the epoll loop."""
    import json
    import socket

    from services.tftp import worker as worker_module
    monkeypatch.setattr(worker_module, "MAX_CHILDREN", 1)
    appliance, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    worker = worker_module.Worker(worker_end)
    clients = []
    try:
        for sid in (1, 2):
            client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            client.bind(("127.0.0.1", 0))
            client.settimeout(5)
            clients.append(client)
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            fd = os.open(root / "medium", os.O_RDONLY)
            socket.send_fds(appliance, [json.dumps({
                "t": "start", "sid": sid, "peer": list(client.getsockname()), "size": 1_000_003,
                "options": {}, "limits": {"timeout": 5.0}}).encode()], [udp.fileno(), fd])
            udp.close()
            os.close(fd)
            worker.on_control()
            data = P.decode(client.recv(2048))
            assert isinstance(data, P.Data) and data.block == 1
        assert list(worker.children) == [1]
        assert [s for s in worker.plane.sessions.values()] == [worker.sessions[2]]
    finally:
        for sid, child in list(worker.children.items()):
            os.kill(child.pid, signal.SIGKILL)
            os.waitpid(child.pid, 0)
        for client in clients:
            client.close()
        appliance.close()
        worker_end.close()
        worker.plane.stop()

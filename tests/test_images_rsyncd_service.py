"""The managed rsync daemon under the real supervisor, on loopback with a real rsync client."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from appliance import supervisor as sup
from appliance.config import Config, RsyncdConfig
from appliance.service import Context
from appliance.store import Store
from services.rsyncd import render
from services.rsyncd.daemon import RsyncdService, end_stale_daemon, listening
from support.ports import free_port

REPO = Path(__file__).resolve().parent.parent



@pytest.fixture
def ctx(tmp_path):
    cfg = Config(interface="lo", address=IPv4Address("127.0.0.1"), state_dir=tmp_path / "state",
                 log_dir=tmp_path / "log", rsyncd=RsyncdConfig(port=free_port(), max_connections=3))
    return Context(cfg, Store(cfg.db_path))


async def fetch(url: str, dest) -> tuple[int, str, str]:
    """Pull one file into dest (never a /dev path: rsync replaces its destination)."""
    if dest.exists():
        dest.unlink()
    status, _, err = await rsync(url, str(dest))
    return status, dest.read_text() if status == 0 else "", err


async def rsync(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec("rsync", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


def add_version(ctx, image: str, version: int, files: dict[str, bytes]) -> None:
    path = ctx.config.images_dir / ".versions" / image / str(version)
    path.mkdir(parents=True)
    for name, data in files.items():
        (path / name).write_bytes(data)
    ctx.store.add_image_version(image, version, str(path))
    ctx.store.finish_image_version(image, version, sum(map(len, files.values())))


async def running(ctx):
    service = RsyncdService(ctx)
    supervisor = sup.Supervisor(ctx, [service])
    await supervisor.start_all(timeout=15)
    assert supervisor.status()["services"][0]["up"], supervisor.status()
    return supervisor, service


def test_serves_modules_follows_changes_and_refuses_others(ctx):
    async def main():
        supervisor, service = await running(ctx)
        url = f"rsync://127.0.0.1:{ctx.config.rsyncd.port}/"
        tmp = ctx.config.state_dir / "fetched"
        try:
            status, out, err = await rsync(url)
            assert status == 0 and {"scripts", "boot"} <= {l.split()[0] for l in out.splitlines()}, err
            (ctx.config.scripts_dir / "hosts").write_text("10.0.0.5 node5\n")
            add_version(ctx, "web", 1, {"big": os.urandom(3 << 20), "hello": b"v1\n"})
            ctx.changed("images")
            for module in ("web@1", "web"):
                status, out, err = await fetch(f"{url}{module}/hello", tmp)
                assert status == 0 and out == "v1\n", err
            status, out, err = await fetch(f"{url}scripts/hosts", tmp)
            assert status == 0 and "node5" in out, err
            # Read-only: uploads are refused.
            status, out, err = await rsync(str(ctx.config.scripts_dir / "hosts"), f"{url}web/x")
            assert status != 0 and "read only" in err.lower(), err
            # Another loopback address is not in hosts allow.
            status, out, err = await rsync("--address=127.0.0.2", f"{url}web/hello", str(tmp))
            assert status != 0 and "access denied" in err.lower(), err
            # A slow transfer in flight survives a config rewrite; the new module appears at once.
            slow = asyncio.create_task(rsync("--bwlimit=1500", f"{url}web/big", str(ctx.config.state_dir / "big")))
            await asyncio.sleep(0.7)
            add_version(ctx, "web", 2, {"hello": b"v2\n"})
            ctx.changed("images")
            status, out, err = await fetch(f"{url}web/hello", tmp)
            assert status == 0 and out == "v2\n", err
            assert not slow.done(), "the slow transfer was meant to be still running"
            status, _, err = await slow
            assert status == 0, err
            assert (ctx.config.state_dir / "big").stat().st_size == 3 << 20
            assert service.health().counters["config_writes"] >= 3 and service.health().ok
        finally:
            await supervisor.stop_all()
        assert service.proc.returncode is not None
    asyncio.run(main())


def test_a_dead_daemon_is_restarted_and_logged(ctx, monkeypatch):
    monkeypatch.setattr(sup, "BACKOFF_FIRST", 0.1)

    async def main():
        supervisor, service = await running(ctx)
        try:
            first = service.proc.pid
            os.kill(first, signal.SIGKILL)
            for _ in range(200):
                await asyncio.sleep(0.05)
                if service.proc.pid != first and listening(service.proc.pid, ctx.config.rsyncd.port):
                    break
            assert service.proc.pid != first, "rsync daemon was not restarted"
            status, out, err = await rsync(f"rsync://127.0.0.1:{ctx.config.rsyncd.port}/")
            assert status == 0 and "scripts" in out, err
            events = ctx.store.events()
            assert any(e["source"] == "rsyncd" and e["kind"] == "exit" for e in events), events
            assert supervisor.status()["services"][0]["restarts"] == 1
        finally:
            await supervisor.stop_all()
    asyncio.run(main())


def test_a_port_in_use_is_reported(ctx):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", ctx.config.rsyncd.port))
        s.listen()

        async def main():
            service = RsyncdService(ctx)
            with pytest.raises(Exception) as exc:
                await asyncio.wait_for(service.serve(lambda: None), 15)
            assert "exited" in str(exc.value) or "not listening" in str(exc.value)
        asyncio.run(main())


APPLIANCE_STAND_IN = """
import asyncio, sys
from ipaddress import IPv4Address
from pathlib import Path
from appliance import supervisor as sup
from appliance.config import Config, RsyncdConfig
from appliance.service import Context
from appliance.store import Store
from services.rsyncd.daemon import RsyncdService

state, port = Path(sys.argv[1]), int(sys.argv[2])
cfg = Config(interface="lo", address=IPv4Address("127.0.0.1"), state_dir=state / "state", log_dir=state / "log",
             rsyncd=RsyncdConfig(port=port, max_connections=3))

async def main():
    service = RsyncdService(Context(cfg, Store(cfg.db_path)))
    await sup.Supervisor(service.ctx, [service]).start_all(timeout=15)
    print(service.proc.pid, flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


def _gone(pid: int, seconds: float) -> bool:
    for _ in range(max(1, int(seconds / 0.05))):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":     # a zombie has ended
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_the_daemon_dies_with_a_killed_appliance(ctx, tmp_path):
    """kill -9 of the appliance: its rsync daemon goes too, and the next appliance gets the port."""
    script = tmp_path / "appliance_stand_in.py"
    script.write_text(APPLIANCE_STAND_IN)
    port = ctx.config.rsyncd.port
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), str(port)], stdout=subprocess.PIPE,
                            text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    rsync_pid = None
    try:
        rsync_pid = int(proc.stdout.readline())
        assert listening(rsync_pid, port)
        proc.kill()
        proc.wait()
        assert _gone(rsync_pid, 5), "the rsync daemon outlived the killed appliance"
    finally:
        proc.kill()
        if rsync_pid is not None and not _gone(rsync_pid, 0.1):
            os.kill(rsync_pid, signal.SIGKILL)     # the orphan this test found: not left behind

    async def main():
        supervisor, service = await running(ctx)
        await supervisor.stop_all()
    asyncio.run(main())


def test_a_daemon_an_earlier_appliance_left_is_ended_before_binding(ctx):
    """An orphan from an appliance without death signals (or a machine crash) must not hold the port forever."""
    service = RsyncdService(ctx)
    for d in (ctx.config.run_dir, ctx.config.log_dir, ctx.config.images_dir, ctx.config.scripts_dir):
        d.mkdir(parents=True, exist_ok=True)
    service.rewrite_config()
    orphan = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={render.conf_path(ctx.config)}"],
                              start_new_session=True)
    try:
        for _ in range(200):
            if listening(orphan.pid, ctx.config.rsyncd.port) and render.pid_path(ctx.config).exists():
                break
            time.sleep(0.05)
        assert listening(orphan.pid, ctx.config.rsyncd.port)

        async def main():
            supervisor, service = await running(ctx)
            try:
                assert service.proc.pid != orphan.pid and service.counters["stale_ended"] == 1
                status, out, err = await rsync(f"rsync://127.0.0.1:{ctx.config.rsyncd.port}/")
                assert status == 0 and "scripts" in out, err
            finally:
                await supervisor.stop_all()
        asyncio.run(main())
        assert orphan.wait(timeout=5) is not None
    finally:
        orphan.kill()
        orphan.wait()


def test_a_stale_pid_file_of_another_program_ends_nothing(ctx, tmp_path):
    ctx.config.run_dir.mkdir(parents=True)
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        render.pid_path(ctx.config).write_text(f"{bystander.pid}\n")
        assert end_stale_daemon(render.pid_path(ctx.config), render.conf_path(ctx.config)) is None
        assert bystander.poll() is None and not render.pid_path(ctx.config).exists()
    finally:
        bystander.kill()
        bystander.wait()

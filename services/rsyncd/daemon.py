"""The real rsync daemon as a supervised child of the appliance.

`rsync --daemon --no-detach` runs as an asyncio subprocess. If it exits, serve()
records the event and raises, so the supervisor restarts it with back-off.
Config changes (images, hosts) are applied by rewriting rsyncd.conf atomically:
rsync reads its config afresh for every new connection, so no signal or
restart is needed and transfers in flight are never cut.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Callable

from services.contract import Endpoint, Health, Service
from services.children import end_group, spawn

from . import render

LISTEN_TIMEOUT = 10.0


class RsyncdDied(RuntimeError):
    """The rsync daemon exited; the message carries its status and last words."""


def listening(pid: int, port: int) -> bool:
    """True once the process's network namespace has a TCP listener on port."""
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def end_stale_daemon(pid_file: Path, conf: Path, wait: float = 5.0) -> int | None:
    """End an rsync daemon of this state directory that an earlier appliance left; its pid, or None.

    Only a process whose command line is rsync with this very --config is ended,
    so a reused pid or another rsync is left alone. The pid file goes either way:
    rsync will not start while it exists.
    """
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pid_file.unlink(missing_ok=True)
        return None
    argv = _cmdline(pid)
    ours = bool(argv) and os.path.basename(argv[0]) == "rsync" and f"--config={conf}" in argv
    if ours:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while _cmdline(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if not _cmdline(pid):
                break
    pid_file.unlink(missing_ok=True)
    return pid if ours else None


class RsyncdService(Service):
    name = "rsyncd"

    def __init__(self, ctx) -> None:   # appliance.service.Context
        super().__init__(ctx)
        self.proc: asyncio.subprocess.Process | None = None
        self.counters = {"starts": 0, "exits": 0, "config_writes": 0}
        ctx.subscribe("images", self.rewrite_config)
        ctx.subscribe("hosts", self.rewrite_config)

    def rewrite_config(self) -> None:
        """Re-render rsyncd.conf; the next connection sees it."""
        cfg = self.ctx.config
        if render.write_if_changed(render.conf_path(cfg), render.render_from_store(cfg, self.ctx.store)):
            self.counters["config_writes"] += 1
            self.log.info("rsyncd.conf rewritten")

    async def serve(self, ready: Callable[[], None]) -> None:
        cfg = self.ctx.config
        rsync = shutil.which("rsync")
        if rsync is None:
            raise RsyncdDied("rsync not found: install the Debian package rsync")
        for d in (cfg.run_dir, cfg.log_dir, cfg.images_dir, cfg.scripts_dir, cfg.boot_root):
            d.mkdir(parents=True, exist_ok=True)
        self.rewrite_config()
        conf = render.conf_path(cfg)
        stale = await asyncio.to_thread(end_stale_daemon, render.pid_path(cfg), conf)
        if stale is not None:
            self.log.warning("ended rsync daemon pid %d that an earlier appliance left running", stale)
            self.counters["stale_ended"] = self.counters.get("stale_ended", 0) + 1
        self.proc = await spawn([rsync, "--daemon", "--no-detach", f"--config={conf}"])
        self.counters["starts"] += 1
        proc = self.proc
        stderr = asyncio.create_task(proc.stderr.read(64 * 1024))
        try:
            deadline = time.monotonic() + LISTEN_TIMEOUT
            while not listening(proc.pid, cfg.rsyncd.port):
                if proc.returncode is not None:
                    break
                if time.monotonic() > deadline:
                    raise RsyncdDied(f"rsync daemon not listening on port {cfg.rsyncd.port} "
                                     f"after {LISTEN_TIMEOUT:.0f}s")
                await asyncio.sleep(0.05)
            if proc.returncode is None:
                self.log.info("rsync daemon pid %d on %s:%d", proc.pid, cfg.address, cfg.rsyncd.port)
                ready()
            status = await proc.wait()
            words = (await stderr).decode(errors="replace").strip()
            self.counters["exits"] += 1
            detail = f"rsync daemon exited with status {status}" + (f": {words[-500:]}" if words else "")
            try:
                self.ctx.store.event("rsyncd", "exit", detail)
            except Exception:
                self.log.exception("could not record the rsync daemon's exit")
            raise RsyncdDied(detail)
        finally:
            stderr.cancel()
            await self._stop(proc)

    async def _stop(self, proc: asyncio.subprocess.Process) -> None:
        await end_group(proc)   # the whole group: the listener and the transfers it forked

    def health(self) -> Health:
        up = self.proc is not None and self.proc.returncode is None
        detail = f"rsync pid {self.proc.pid}" if up else "rsync daemon not running"
        return Health(up, detail, dict(self.counters))

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint("tcp", str(self.ctx.config.address), self.ctx.config.rsyncd.port,
                         "images, scripts, boot (rsync)")]

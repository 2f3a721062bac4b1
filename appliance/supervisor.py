"""Runs every enabled service in one asyncio loop, restarts crashed ones.

Signals: SIGTERM/SIGINT stop everything cleanly; SIGHUP re-reads the config
and restarts the services with it (a bad new config is logged and ignored).
"""
from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass, field
from typing import Callable

from services.dhcp.server import DhcpService
from services.dns.server import DnsService
from services.rsyncd.daemon import RsyncdService
from services.tftp.server import TftpService

from .fleet.service import FleetService
from .http import HttpService
from .service import Context, Endpoint, Health, Service

log = logging.getLogger("si.supervisor")

# The services of the appliance, by config name, in start order.
REGISTRY: dict[str, type[Service]] = {
    "http": HttpService,
    "tftp": TftpService,
    "dns": DnsService,
    "rsyncd": RsyncdService,
    "dhcp": DhcpService,
    "fleet": FleetService,
}

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0


@dataclass
class Running:
    service: Service
    task: asyncio.Task | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    restarts: int = 0
    last_error: str = ""
    started: float = 0.0


def build_services(ctx: Context, registry: dict[str, type[Service]] | None = None) -> list[Service]:
    return [cls(ctx) for name, cls in (registry or REGISTRY).items() if ctx.config.enabled(name)]


class Supervisor:
    def __init__(self, ctx: Context, services: list[Service],
                 reload_config: Callable[[], Context] | None = None) -> None:
        self.ctx = ctx
        self.running = {s.name: Running(s) for s in services}
        self._stop = asyncio.Event()
        self._reload = reload_config
        self.started = time.time()

    # --- lifecycle -------------------------------------------------------
    def start(self, name: str) -> None:
        run = self.running[name]
        run.ready.clear()
        run.task = asyncio.create_task(self._keep_running(run), name=f"service-{name}")

    async def stop(self, name: str) -> None:
        run = self.running[name]
        if run.task and not run.task.done():
            run.task.cancel()
            try:
                await run.task
            except asyncio.CancelledError:
                pass

    async def _keep_running(self, run: Running) -> None:
        delay = BACKOFF_FIRST
        while True:
            run.started = time.time()
            try:
                await run.service.serve(run.ready.set)
                run.last_error = "serve() returned"
                log.error("service %s stopped by itself; restarting", run.service.name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                run.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("service %s crashed; restarting in %.1fs", run.service.name, delay)
                self._record(run.service.name, "crash", run.last_error)
            run.ready.clear()
            run.restarts += 1
            # A service that ran a good while before crashing starts over at the first delay.
            if time.time() - run.started > BACKOFF_MAX:
                delay = BACKOFF_FIRST
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    def _record(self, source: str, kind: str, detail: str) -> None:
        try:
            self.ctx.store.event(source, kind, detail)
        except Exception:
            log.exception("could not record event")

    async def start_all(self, timeout: float = 30.0) -> None:
        for name in self.running:
            self.start(name)
        waits = [asyncio.create_task(r.ready.wait()) for r in self.running.values()]
        done, pending = await asyncio.wait(waits, timeout=timeout)
        for task in pending:
            task.cancel()

    async def stop_all(self) -> None:
        for name in reversed(list(self.running)):
            await self.stop(name)

    # --- status ----------------------------------------------------------
    def status(self) -> dict:
        services = []
        for name, run in self.running.items():
            try:
                health = run.service.health()
            except Exception as exc:
                health = Health(False, f"health() failed: {exc}")
            up = bool(run.task and not run.task.done() and run.ready.is_set())
            services.append({
                "name": name,
                "up": up,
                "ok": up and health.ok,
                "detail": health.detail or run.last_error,
                "restarts": run.restarts,
                "endpoints": [str(e) for e in run.service.endpoints()],
                "serves": ", ".join(sorted({e.what for e in run.service.endpoints() if e.what})),
                "counters": health.counters,
            })
        return {"ok": all(s["ok"] for s in services), "uptime": round(time.time() - self.started, 1),
                "interface": self.ctx.config.interface, "address": str(self.ctx.config.address),
                "services": services, "installs_blocked_by": install_blockers(self.ctx.config)}

    # --- main loop -------------------------------------------------------
    async def run_until_signalled(self, on_started: Callable[[dict], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        await self.start_all()
        if on_started:
            on_started(self.status())
        await self._stop.wait()
        log.info("stopping")
        await self.stop_all()

    async def reload(self) -> None:
        if not self._reload:
            return
        try:
            ctx = self._reload()
        except Exception as exc:
            log.error("reload refused, keeping the running config: %s", exc)
            return
        log.info("reloading config from %s", ctx.config.source)
        await self.stop_all()
        self.ctx = ctx
        self.running = {s.name: Running(s) for s in build_services(ctx)}
        await self.start_all()
        self._record("supervisor", "reload", str(ctx.config.source))


def install_blockers(cfg) -> list[str]:
    """What keeps any install from starting although the services run: the boot root's
    missing pieces, each with the command that makes it (empty: ready)."""
    from .bootconfig import needed_files
    from .bootconfig.decide import INITRD, KERNEL
    root = cfg.boot_root
    out = []
    if not (root / KERNEL).is_file() or not (root / INITRD).is_file():
        out.append(f"no autoinstall kernel and initrd in {root / 'systemimager'}: run 'si mkbootimage'")
    missing = sorted(f for f in needed_files(cfg) if not (root / f).is_file())
    if missing:
        out.append(f"boot loaders missing from {root}: {', '.join(missing)}: run 'si mkbootserver'")
    return out


def status_rows(status: dict) -> list[tuple[str, str, str, str]]:
    rows = []
    for s in status["services"]:
        state = "up" if s["ok"] else ("degraded" if s["up"] else "down")
        # What it serves, then what is wrong or worth knowing (an error, a slower fallback).
        notes = "; ".join(text for text in (s["serves"], s["detail"]) if text)
        rows.append((s["name"], state, " ".join(s["endpoints"]) or "-", notes))
    return rows

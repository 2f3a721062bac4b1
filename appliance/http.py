"""HTTP: boot files (sendfile, Range), the JSON API, and install progress.

Other parts add their routes through ROUTE_PROVIDERS (functions taking the
aiohttp app and the Context), so this module stays the HTTP frame only.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import time
from typing import Callable

from aiohttp import web

from services import safepath

from . import progress_report
from .client.routes import add_routes as client_routes
from .console import token as console_token, views as console_views
from .console.routes import add_routes as console_routes
from .fleet.routes import add_routes as fleet_routes
from .http_guard import Guard, GuardedSite
from .service import Context, Endpoint, Health, Service
from .store.installs import SUMMARY_TAIL

log = logging.getLogger("si.http")

ROUTE_PROVIDERS: list[Callable[[web.Application, Context], None]] = [client_routes, fleet_routes, console_routes]
CTX_KEY = web.AppKey("ctx", Context)

MAX_PROGRESS_BODY = 1024 * 1024


def _json(data, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status=status)


def build_app(ctx: Context, counters: dict[str, int] | None = None) -> web.Application:
    counters = counters if counters is not None else {}

    @web.middleware
    async def install_network_only(request: web.Request, handler):
        """Answer loopback, the install subnets, allow_clients and known hosts (relayed ones); no one else."""
        remote = request.remote or ""
        if not ctx.config.serves_client(remote) and store.host_by_ip(remote) is None:
            counters["refused_clients"] = counters.get("refused_clients", 0) + 1
            return _error(403, f"{remote} is not on an install network (allow_clients in the config)")
        return await handler(request)

    app = web.Application(client_max_size=MAX_PROGRESS_BODY, middlewares=[install_network_only])
    app[CTX_KEY] = ctx
    store = ctx.store

    async def health(request: web.Request) -> web.Response:
        status = ctx.status()
        return _json(status, 200 if status.get("ok") else 503)

    async def hosts(request):
        return _json([h.as_dict() for h in store.hosts()])

    async def leases(request):
        return _json([l.as_dict() for l in store.leases()])

    async def images(request):
        return _json(console_views.images_view(store))

    async def installs(request):
        # Without logs: a run's log is /api/installs/{host} (and its stream), not part of every poll.
        return _json([console_views.install_summary(r) for r in store.installs(tail=SUMMARY_TAIL)])

    async def monitor_page(request):
        raise web.HTTPFound("/#installs")     # the console has the installs table now

    async def progress(request: web.Request) -> web.Response:
        """An autoinstalling client reports a phase, percent, bytes or its result."""
        hostname = request.match_info["hostname"]
        host = store.host(hostname)
        if host is None:
            counters["progress_refused"] = counters.get("progress_refused", 0) + 1
            return _error(404, f"unknown host {hostname}")
        lease = store.lease_for_mac(host.mac) if host.mac else None
        owners = {host.ip, lease.ip if lease else None} - {None}
        if request.remote not in owners:
            counters["progress_refused"] = counters.get("progress_refused", 0) + 1
            return _error(403, f"{request.remote} does not own host {hostname}")
        try:
            report = progress_report.parse(await request.read())
        except progress_report.BadReport as exc:
            counters["progress_bad"] = counters.get("progress_bad", 0) + 1
            return _error(400, str(exc))
        current = store.current_install(hostname)
        event = progress_report.milestone(current, report, host.image, time.time())
        if event is not None:
            kind, detail = event
            log.info("%s: %s", hostname, detail)
            store.event("install", kind, detail, host=hostname)
        if progress_report.starts_run(current, report):
            install_id = store.start_install(hostname, host.image, report.kind)
        else:
            install_id = current.id
        store.update_install(install_id, phase=report.phase, percent=report.percent,
                             bytes_done=report.bytes_done, state=report.state, log_append=report.log)
        if report.log:
            _append_log(ctx, hostname, report.log)
        if report.state == "succeeded" and (current is None or current.kind == "install"):
            # Netboot-once: an installed host boots its own disk from now on.
            store.set_netboot(hostname, "local")
            ctx.changed("hosts")
        counters["progress"] = counters.get("progress", 0) + 1
        return _json({"install": install_id})

    def serve_from(root_of: Callable[[], object]):
        async def handler(request: web.Request) -> web.StreamResponse:
            requested = request.match_info["path"]
            dynamic = ctx.dynamic_file(requested, request.remote or "") if root_of is boot_root else None
            if dynamic is not None:
                return web.Response(body=dynamic, content_type="text/plain")
            try:
                path = safepath.resolve(root_of(), requested)
            except safepath.UnsafePath:
                counters["files_refused"] = counters.get("files_refused", 0) + 1
                return _error(403, "forbidden")
            except safepath.NotFound:
                return _error(404, "not found")
            counters["files_sent"] = counters.get("files_sent", 0) + 1
            return web.FileResponse(path)  # sendfile and Range come with it
        return handler

    def boot_root():
        return ctx.config.boot_root

    app.router.add_get("/api/health", health)
    app.router.add_get("/api/hosts", hosts)
    app.router.add_get("/api/leases", leases)
    app.router.add_get("/api/images", images)
    app.router.add_get("/api/installs", installs)
    app.router.add_get("/monitor", monitor_page)
    app.router.add_post("/api/installs/{hostname}", progress)
    # /boot: TFTP's root over HTTP; /scripts: the hosts file and per-host
    # autoinstall scripts that autoinstalling clients fetch.
    app.router.add_get("/boot/{path:.+}", serve_from(boot_root))
    app.router.add_get("/scripts/{path:.+}", serve_from(lambda: ctx.config.scripts_dir))
    for add_routes in ROUTE_PROVIDERS:
        add_routes(app, ctx)
    return app


def _append_log(ctx: Context, hostname: str, text: str) -> None:
    ctx.config.log_dir.mkdir(parents=True, exist_ok=True)
    with open(ctx.config.log_dir / f"{hostname}.log", "a", encoding="utf-8", errors="replace") as f:
        f.write(text if text.endswith("\n") else text + "\n")


class HttpService(Service):
    name = "http"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.counters: dict[str, int] = {}
        self._binds: list[str] = []
        self.guard: Guard | None = None

    def _addresses(self) -> list[str]:
        # The install network and loopback (for 'si status'); never every interface.
        return sorted({str(self.ctx.config.address), "127.0.0.1"})

    async def serve(self, ready: Callable[[], None]) -> None:
        import asyncio
        http = self.ctx.config.http
        runner = web.AppRunner(build_app(self.ctx, self.counters), access_log=None,
                               keepalive_timeout=http.keepalive_timeout)
        await runner.setup()
        self.guard = Guard(http.header_timeout, http.body_timeout, http.max_connections_per_client)
        console_token.ensure(self.ctx.config.state_dir)    # made at first start; 'si console token' shows it
        try:
            self._binds = []
            for address in self._addresses():
                site = GuardedSite(runner, address, http.port, self.guard)
                await site.start()
                self._binds.append(address)
            ready()
            while True:      # a machine powered off mid-install stops reporting: say so
                await asyncio.sleep(min(60.0, http.install_timeout / 4))
                self.fail_silent_installs()
        finally:
            await runner.cleanup()

    def fail_silent_installs(self) -> None:
        timeout = self.ctx.config.http.install_timeout
        for run in self.ctx.store.fail_silent_installs(timeout):
            self.counters["installs_timed_out"] = self.counters.get("installs_timed_out", 0) + 1
            self.log.warning("%s: %s of %s marked failed, no report for %.0f s (powered off?)",
                             run.hostname, run.kind, run.image or "-", timeout)
            self.ctx.store.event("install", "failed", f"{run.kind} of {run.image or '-'} failed: no report "
                                 f"for {timeout:.0f} s", host=run.hostname)

    def health(self) -> Health:
        guard = self.guard.counters if self.guard else {}
        return Health(True, counters={**self.counters, **guard})

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint("tcp", a, self.ctx.config.http.port, "API, boot files, progress")
                for a in self._addresses()]

"""The console over HTTP: the page at /, per-item JSON routes, two live streams and the actions.

Reading is open to whoever the HTTP service answers (loopback, the install networks,
allow_clients); actions need the operator token. The streams look at the store every
POLL seconds and send only what changed, so an open page costs one small query a poll.
"""
from __future__ import annotations

import asyncio
import json
import logging
from importlib import resources

from aiohttp import web

from ..store.installs import SUMMARY_TAIL
from . import actions, sse, token, views

log = logging.getLogger("si.console")

POLL = 0.5            # seconds between a stream's looks at the store
KEEPALIVE_EVERY = 15  # seconds of silence before a stream sends a comment line
STATIC = {"console.js": "application/javascript", "console.css": "text/css"}
# The page loads nothing from anywhere else, and no other site may frame it.
HEADERS = {"Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'none'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}
STOPPING = web.AppKey("console_stopping", asyncio.Event)


def _json(data, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def add_routes(app: web.Application, ctx) -> None:
    store, cfg = ctx.store, ctx.config
    refused = {"actions_refused": 0}

    async def stopping(_app) -> None:
        app[STOPPING].set()     # streams end at once instead of holding the shutdown

    async def made(_app) -> None:
        app[STOPPING] = asyncio.Event()

    app.on_startup.append(made)
    app.on_shutdown.append(stopping)

    async def page(request):
        return web.Response(body=_static("console.html"), content_type="text/html", charset="utf-8",
                            headers=HEADERS)

    async def asset(request):
        name = request.match_info["name"]
        return web.Response(body=_static(name), content_type=STATIC[name], headers=HEADERS)

    async def overview(request):
        return _json({"health": ctx.status(), "hosts": views.hosts_view(store, cfg),
                      "unenrolled": views.unenrolled_machines(store), "images": views.images_view(store),
                      "installs": [views.install_summary(r) for r in store.installs(50, tail=SUMMARY_TAIL)],
                      "events": store.events(30), "counters": dict(refused)})

    async def one_host(request):
        view = views.one_host_view(store, cfg, request.match_info["hostname"])
        if view is None:
            return _json({"error": f"no host {request.match_info['hostname']!r}"}, 404)
        return _json(view)

    async def one_install(request):
        hostname = request.match_info["hostname"]
        run = store.current_install(hostname)
        if run is None:
            return _json({"error": f"no install or update of {hostname!r} yet"}, 404)
        try:
            offset = int(request.query.get("offset", "0"))
        except ValueError:
            return _json({"error": "offset: a number of characters"}, 400)
        return _json(views.log_from(run, offset))

    async def one_image(request):
        name = request.match_info["name"]
        view = next((i for i in views.images_view(store) if i["name"] == name), None)
        return _json(view) if view else _json({"error": f"no image {name!r}"}, 404)

    async def act(request):
        if not token.authorised(request.headers.get("Authorization"), token.read(cfg.state_dir)):
            refused["actions_refused"] += 1
            return _json({"error": "actions need the operator token ('si console token' on the appliance "
                                   "shows it)"}, 401)
        hostname, action = request.match_info["hostname"], request.match_info["action"]
        by = f"console {request.remote}"
        try:
            if action == "image":
                try:
                    body = await request.json()
                except ValueError:
                    return _json({"error": "the body must be JSON: {\"image\": NAME}"}, 400)
                image = body.get("image") if isinstance(body, dict) else None
                if not isinstance(image, str):
                    return _json({"error": "the body must be JSON: {\"image\": NAME}"}, 400)
                message = actions.assign_image(store, hostname, image, by=by)
            else:
                message = actions.BY_NAME[action](store, hostname, by=by)
        except actions.Refused as exc:
            return _json({"error": str(exc)}, exc.status)
        log.info("%s (from the console, %s)", message, request.remote)
        ctx.changed("hosts")
        return _json({"ok": True, "message": message, "host": views.one_host_view(store, cfg, hostname)})

    async def stream(request):
        """Events as they are recorded, and every host or install row that changed."""
        resp = await _open(request)
        after = _last_id(request, default=(store.events(1) or [{"id": 0}])[-1]["id"])
        before_hosts, before_runs = {}, {}
        first = True
        quiet = 0.0
        while not app[STOPPING].is_set():
            sent = False
            for e in store.events(500, after=after):
                await resp.write(sse.frame("event", e, e["id"]))
                after, sent = e["id"], True
            hosts = {h.hostname: h for h in store.hosts()}
            recent = {r.id: r for r in store.installs(50, tail=SUMMARY_TAIL)}
            runs = {i: (r.hostname, r.state, r.phase, r.percent, r.bytes) for i, r in recent.items()}
            if not first:
                changed = {n for n in hosts.keys() | before_hosts.keys() if hosts.get(n) != before_hosts.get(n)}
                for run_id, row in runs.items():
                    if before_runs.get(run_id) != row:
                        changed.add(row[0])
                        await resp.write(sse.frame("install", views.install_summary(recent[run_id])))
                        sent = True
                for name in sorted(changed):
                    view = views.one_host_view(store, cfg, name)
                    await resp.write(sse.frame("host", view or {"hostname": name, "deleted": True}))
                    sent = True
            before_hosts, before_runs, first = hosts, runs, False
            quiet = 0.0 if sent else quiet + POLL
            if quiet >= KEEPALIVE_EVERY:
                await resp.write(sse.KEEPALIVE)
                quiet = 0.0
            await _pause(app)
        return resp

    async def log_stream(request):
        """One host's newest run: its log as it grows, and its row whenever it changes."""
        hostname = request.match_info["hostname"]
        resp = await _open(request)
        run_id, offset = _run_and_offset(request)
        last_row = None
        while not app[STOPPING].is_set():
            run = store.current_install(hostname)
            if run is not None:
                if run.id != run_id:
                    run_id, offset = run.id, 0 if run_id is not None else offset
                text = run.log
                if len(text) < offset:      # cut at the front by the store's limit: start over
                    offset = 0
                if len(text) > offset:
                    await resp.write(sse.frame("log", {"run": run.id, "text": text[offset:]},
                                               f"{run.id}:{len(text)}"))
                    offset = len(text)
                row = views.install_summary(run)
                key = (row["id"], row["state"], row["phase"], row["percent"], row["bytes"])
                if key != last_row:
                    await resp.write(sse.frame("run", row, f"{run.id}:{offset}"))
                    last_row = key
            await _pause(app)
        return resp

    app.router.add_get("/", page)
    app.router.add_get("/{name:console\\.(?:js|css)}", asset)
    app.router.add_get("/api/console", overview)
    app.router.add_get("/api/stream", stream)
    app.router.add_get("/api/hosts/{hostname}", one_host)
    app.router.add_post("/api/hosts/{hostname}/{action:reinstall|local|image}", act)
    app.router.add_get("/api/installs/{hostname}", one_install)
    app.router.add_get("/api/installs/{hostname}/log", log_stream)
    app.router.add_get("/api/images/{name}", one_image)


async def _open(request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    await resp.write(b"retry: 2000\n\n")
    return resp


async def _pause(app) -> None:
    try:
        await asyncio.wait_for(app[STOPPING].wait(), POLL)
    except asyncio.TimeoutError:
        pass


def _last_id(request, default: int) -> int:
    """Where an events stream resumes: the browser's Last-Event-ID on a reconnect, or ?after=."""
    raw = request.headers.get("Last-Event-ID") or request.query.get("after")
    try:
        return int(raw) if raw is not None else default
    except ValueError:
        return default


def _run_and_offset(request) -> tuple[int | None, int]:
    """A log stream resumes at 'RUN:OFFSET' (Last-Event-ID) or ?run=&offset=; a fresh one at 0."""
    raw = request.headers.get("Last-Event-ID")
    try:
        if raw and ":" in raw:
            run, offset = raw.split(":", 1)
            return int(run), int(offset)
        run = request.query.get("run")
        return (int(run) if run else None), int(request.query.get("offset", "0"))
    except ValueError:
        return None, 0

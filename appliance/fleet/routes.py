"""HTTP for installing machines (ROUTE_PROVIDERS entry): which transport, and the torrents.

GET /api/fleet/<image>/<host>[?transport=...]  key=value lines for the master script
GET /fleet/<image>/<version>/image.torrent     a pack's torrent
GET /api/fleet/<image>/<version>/sent-to-me    bytes=N the appliance's seeder sent the asker
GET /api/fleet                                 packs, sessions and seeders (JSON)
"""
from __future__ import annotations

from aiohttp import web

from services.fleet import pack
from services.names import is_host_label, valid_image_name

from . import fleet_of


def add_routes(app: web.Application, ctx) -> None:
    async def plan(request: web.Request) -> web.Response:
        image, host = request.match_info["image"], request.match_info["host"]
        if not valid_image_name(image) or not is_host_label(host):
            return web.Response(status=400, text="error=bad image or host name\n")
        answer = await fleet_of(ctx).plan(image, host, request.query.get("transport"))
        if answer.transport != "rsync" or answer.detail:
            ctx.store.event("fleet", "plan", f"{answer.transport}: {answer.detail}", host=host)
        return web.Response(text=answer.text(), content_type="text/plain")

    async def torrent(request: web.Request) -> web.StreamResponse:
        image, version = request.match_info["image"], request.match_info["version"]
        if not valid_image_name(image) or not version.isdigit():
            raise web.HTTPNotFound()
        p = fleet_of(ctx).ready_pack(image, int(version))
        if p is None:
            raise web.HTTPNotFound()
        return web.FileResponse(p.torrent, headers={"Content-Type": "application/x-bittorrent"})

    async def sent(request: web.Request) -> web.Response:
        """What the appliance's seeder sent the asking machine (the rest of its stream came
        from its peers): `bytes=N`, read by the master script as data."""
        image, version = request.match_info["image"], request.match_info["version"]
        if not valid_image_name(image) or not version.isdigit():
            return web.Response(status=400, text="error=bad image or version\n")
        done = await fleet_of(ctx).sent_to(image, int(version), request.remote or "")
        return web.Response(text=f"bytes={done}\n", content_type="text/plain")

    async def status(request: web.Request) -> web.Response:
        return web.json_response(fleet_of(ctx).status())

    app.router.add_get("/api/fleet/{image}/{host}", plan)
    app.router.add_get("/fleet/{image}/{version}/" + pack.TORRENT, torrent)
    app.router.add_get("/api/fleet/{image}/{version}/sent-to-me", sent)
    app.router.add_get("/api/fleet", status)

"""Serve the golden-client program at /client/siclient.py (ROUTE_PROVIDERS entry).

A golden client needs nothing installed but Python 3 and rsync:
`curl -O http://SERVER:8080/client/siclient.py && python3 siclient.py prepareclient ...`
"""
from __future__ import annotations

from pathlib import Path

from aiohttp import web

PROGRAM = Path(__file__).with_name("siclient.py")


def add_routes(app: web.Application, ctx) -> None:
    async def program(request: web.Request) -> web.Response:
        return web.Response(body=PROGRAM.read_bytes(), content_type="text/x-python",
                            headers={"Content-Disposition": 'attachment; filename="siclient.py"'})

    app.router.add_get("/client/siclient.py", program)

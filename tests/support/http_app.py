"""Test support: the real aiohttp app served on a loopback port from a thread, behind the real guard."""
from __future__ import annotations

import asyncio
import threading

from aiohttp import web

from appliance.http import build_app
from appliance.http_guard import Guard, GuardedSite
from appliance.service import Context
from .ports import free_port


class Server:
    """Run the real aiohttp app in a background loop; requests go over TCP."""

    def __init__(self, ctx: Context, guard: Guard | None = None):
        self.ctx = ctx
        self.guard = guard or Guard()
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(build_app(self.ctx))
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(GuardedSite(self.runner, "127.0.0.1", self.port, self.guard).start())
        self.ready.set()
        self.loop.run_forever()

    def close(self):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"



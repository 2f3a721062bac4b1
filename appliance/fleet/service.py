"""The fleet as a supervised service: packs current image versions that a fleet
transport will need, in the background, and ends the engines when it stops."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Callable

from ..service import Health, Service
from . import fleet_of


WATCH_SECONDS = 2.0


class FleetService(Service):
    name = "fleet"

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.fleet = fleet_of(ctx)
        ctx.subscribe("images", self.pack_current)

    def pack_current(self) -> None:
        """Pack the current version of every image a fleet transport is configured for."""
        s = self.ctx.config.fleet
        for row in self.ctx.store.complete_image_versions():
            image = row["image"]
            wanted = {s.transport_for(image, grp) for grp in [None, *dict(s.groups)]}
            latest = self.ctx.store.latest_image_version(image)
            if wanted != {"rsync"} and latest and latest["version"] == row["version"]:
                try:
                    self.fleet.want_pack(image, row["version"], Path(row["path"]))
                except RuntimeError:   # no running loop: called from outside the appliance
                    return

    def _current_versions(self) -> dict[str, int]:
        return {r["image"]: r["version"] for r in self.ctx.store.complete_image_versions()}

    async def serve(self, ready: Callable[[], None]) -> None:
        self.pack_current()
        ready()
        # getimage and 'si images' commit versions from other processes, which notify no one
        # here: look for a new current version now and then, and pack it in the background
        # before the first machine asks.
        seen = self._current_versions()
        try:
            while True:
                await asyncio.sleep(WATCH_SECONDS)
                now = self._current_versions()
                if now != seen:
                    seen = now
                    self.pack_current()
        finally:
            await self.fleet.close()

    def health(self) -> Health:
        st = self.fleet.status()
        detail = ", ".join(f"{p['image']}:{p['version']} {p['state']}" for p in st["packs"]) or "no packs"
        return Health(True, detail, dict(st["counters"]))

"""Installing many machines at once: packs, the BitTorrent swarm and multicast sessions.

`fleet_of(ctx)` is the one Fleet of an appliance, shared by the HTTP routes
(which answer installing machines) and the supervised fleet service (which
packs images in the background and stops the engines with the appliance).
"""
from __future__ import annotations

from .coordinator import Fleet, pack_dir  # noqa: F401  (pack_dir: where a version's stream lives)


def fleet_of(ctx) -> Fleet:
    if ctx.fleet is None:
        ctx.fleet = Fleet(ctx)
    return ctx.fleet

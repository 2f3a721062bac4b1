"""The hosts table as the DHCP hot path sees it: an in-memory copy kept fresh.

Looking a MAC up in SQLite for every packet costs more than the rest of the
decision, so the policy reads this copy. It reloads when another connection committed
(the store's data_version: `si hosts set` in another process), or when this
process says hosts changed (Context.changed("hosts")).
"""
from __future__ import annotations

import time

from appliance.store import Store
from appliance.store.records import Host

RECHECK_SECONDS = 1.0     # how stale a change made by another process may be


class HostDirectory:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.by_mac: dict[str, Host] = {}
        self.by_ip: dict[str, Host] = {}
        self.dynamic_images: set[str] = set()
        self._version: int | None = None
        self._dirty = True
        self._checked = 0.0

    def invalidate(self) -> None:
        self._dirty = True

    def refresh(self) -> None:
        """Call once per batch of packets: cheap unless the database changed."""
        now = time.monotonic()
        if not self._dirty and now - self._checked < RECHECK_SECONDS:
            return
        self._checked = now
        version = self.store.data_version()
        if not self._dirty and version == self._version:
            return
        hosts = self.store.hosts()
        self.by_mac = {h.mac: h for h in hosts if h.mac}
        self.by_ip = {h.ip: h for h in hosts if h.ip}
        self.dynamic_images = self.store.dynamic_dhcp_images()
        self._version = version
        self._dirty = False

    def host_by_mac(self, mac: str) -> Host | None:
        return self.by_mac.get(mac)

    def host_by_ip(self, ip: str) -> Host | None:
        return self.by_ip.get(ip)

    def floats(self, host: Host) -> bool:
        return floats(host, self.dynamic_images)


def floats(host: Host, dynamic_images: set[str]) -> bool:
    """An installed host of a dynamic_dhcp image takes pool addresses; while it installs (its
    next boot autoinstalls) it has its own, which the autoinstall finds its name by."""
    return host.netboot == "local" and host.image in dynamic_images

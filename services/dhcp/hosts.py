"""The hosts table as the DHCP hot path sees it: an in-memory copy kept fresh.

Looking a MAC up in SQLite for every packet costs more than the rest of the
decision, so the policy reads this copy. It reloads when another connection committed
(the store's data_version: `si hosts set` in another process), or when this
process says hosts changed (Context.changed("hosts")).
"""
from __future__ import annotations

import re
import time
from ipaddress import IPv4Address

from services.records import Host

from .state import HostSource

RECHECK_SECONDS = 1.0     # how stale a change made by another process may be


class HostDirectory:
    def __init__(self, store: HostSource) -> None:
        self.store = store
        self.by_mac: dict[str, Host] = {}
        self.by_ip: dict[str, Host] = {}
        self.dynamic_images: set[str] = set()
        self._waiting: list[Host] = []
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
        self._waiting = waiting(hosts)
        self._version = version
        self._dirty = False

    def host_by_mac(self, mac: str) -> Host | None:
        return self.by_mac.get(mac)

    def host_by_ip(self, ip: str) -> Host | None:
        return self.by_ip.get(ip)

    def floats(self, host: Host) -> bool:
        return floats(host, self.dynamic_images)

    def waiting(self) -> list[Host]:
        return self._waiting


def floats(host: Host, dynamic_images: set[str]) -> bool:
    """An installed host of a dynamic_dhcp image takes pool addresses; while it installs (its
    next boot autoinstalls) it has its own, which the autoinstall finds its name by."""
    return host.netboot == "local" and host.image in dynamic_images


def waiting(hosts: list[Host]) -> list[Host]:
    """Hosts with a usable address and no MAC, in name order with numbers as numbers (node2
    before node10): the order the manual's user boots them in (dhcp.in_order)."""
    def usable(h: Host) -> bool:
        try:
            IPv4Address(h.ip)
            return True
        except ValueError:
            return False
    key = lambda h: [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", h.hostname)]
    return sorted((h for h in hosts if h.ip and not h.mac and usable(h)), key=key)

"""What the appliance's services share (Context); the service contract itself (Service,
Health, Endpoint) is services/contract.py, which services import without importing the
appliance.
"""
from __future__ import annotations

import logging
from typing import Callable

from services.contract import Endpoint, Health, Service  # noqa: F401  (the appliance's names for them)

from .config import Config
from .store import Store


class Context:
    """What services share: the config, the store, and change notifications.

    `changed(topic)` tells subscribers that hosts, leases or images changed so
    derived files (rsyncd.conf, hosts file, DNS zone) can be regenerated.
    """

    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store
        self._subscribers: dict[str, list[Callable[[], None]]] = {}
        # Set by the supervisor: returns the status table as a dict.
        self.status: Callable[[], dict] = lambda: {"ok": True, "services": []}
        # Files rendered on request (pxelinux.cfg/01-<mac>, iPXE/GRUB configs): each
        # provider maps (path, client_ip) to bytes, or None when the path is not its.
        self.dynamic_files: list[Callable[[str, str], bytes | None]] = []
        self.force = False  # 'si up --force': the operator overrides safety refusals
        self.fleet = None   # appliance.fleet.Fleet, made on first use (fleet_of)

    def dynamic_file(self, path: str, client_ip: str) -> bytes | None:
        for provider in self.dynamic_files:
            data = provider(path, client_ip)
            if data is not None:
                return data
        return None

    def subscribe(self, topic: str, callback: Callable[[], None]) -> None:
        self._subscribers.setdefault(topic, []).append(callback)

    def changed(self, topic: str) -> None:
        for callback in self._subscribers.get(topic, []):
            try:
                callback()
            except Exception:  # one bad subscriber must not stop the others
                logging.getLogger("appliance").exception("subscriber of %r failed", topic)

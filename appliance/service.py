"""The one small interface every service of the appliance implements.

A service is started by the supervisor calling `serve()` in its own task: it
binds its sockets, calls `ready()` once it answers, then serves until the task
is cancelled (stop). Raising from `serve()` is a crash: the supervisor logs it
and restarts the service with back-off. `health()` and `endpoints()` feed the
status table and /api/health.
"""
from __future__ import annotations

import abc
import logging
from dataclasses import dataclass, field
from typing import Callable

from .config import Config
from .store import Store


@dataclass(frozen=True)
class Endpoint:
    proto: str      # "udp" / "tcp"
    address: str
    port: int
    what: str = ""  # e.g. "pxelinux, iPXE, kernel/initrd"

    def __str__(self) -> str:
        return f"{self.proto}/{self.address}:{self.port}"


@dataclass
class Health:
    ok: bool = True
    detail: str = ""
    counters: dict[str, int] = field(default_factory=dict)


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


class Service(abc.ABC):
    name: str = "service"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.log = logging.getLogger(f"si.{self.name}")

    @abc.abstractmethod
    async def serve(self, ready: Callable[[], None]) -> None:
        """Bind, call ready(), serve until cancelled. Raise to report a crash."""

    def health(self) -> Health:
        return Health()

    def endpoints(self) -> list[Endpoint]:
        return []

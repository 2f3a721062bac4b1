"""The one small interface every service of the appliance implements (shared by appliance/
and services/, importing neither).

A service is started by the supervisor calling `serve()` in its own task: it
binds its sockets, calls `ready()` once it answers, then serves until the task
is cancelled (stop). Raising from `serve()` is a crash: the supervisor logs it
and restarts the service with back-off. `health()` and `endpoints()` feed the
status table and /api/health.

A service gets a context (appliance/service.py's Context): the config, the store,
`subscribe(topic, callback)` / `changed(topic)` for hosts, leases and images changing,
and `dynamic_file(path, client_ip)` for boot files rendered on request.
"""
from __future__ import annotations

import abc
import logging
from dataclasses import dataclass, field
from typing import Any, Callable


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


class Service(abc.ABC):
    name: str = "service"

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.log = logging.getLogger(f"si.{self.name}")

    @abc.abstractmethod
    async def serve(self, ready: Callable[[], None]) -> None:
        """Bind, call ready(), serve until cancelled. Raise to report a crash."""

    def health(self) -> Health:
        return Health()

    def endpoints(self) -> list[Endpoint]:
        return []

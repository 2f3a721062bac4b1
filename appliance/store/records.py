"""Plain records the store hands out (rows turned into frozen dataclasses).

Host and Lease are the services' own shapes (services/records.py); Install is the store's.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from services.records import Host, Lease, normalise_mac

__all__ = ["Host", "Lease", "Install", "normalise_mac"]


@dataclass(frozen=True)
class Install:
    id: int
    hostname: str
    image: str | None
    kind: str
    state: str           # running | succeeded | failed
    phase: str | None
    percent: float
    bytes: int
    started: float
    finished: float | None
    log: str
    updated: float | None = None     # its last report (None: rows from before schema 3)
    log_size: int = 0                # characters of log kept, even when `log` holds only its tail

    def as_dict(self) -> dict:
        return asdict(self)

"""The rsync daemon's own settings: the [rsyncd] table, and what it reads of the rest.

    [rsyncd]
    port = 873
    max_connections = 64

The appliance's Config is a Site: rsyncd takes it through that protocol, never by import.
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Protocol

from services.tomlcheck import check_keys, port, positive


@dataclass(frozen=True)
class RsyncdConfig:
    port: int = 873
    max_connections: int = 64


class Subnet(Protocol):
    network: IPv4Network


class Site(Protocol):
    """What the rsync daemon's config is written from."""
    address: IPv4Address
    subnets: tuple[Subnet, ...]
    rsyncd: RsyncdConfig
    log_dir: Path

    @property
    def run_dir(self) -> Path: ...

    @property
    def scripts_dir(self) -> Path: ...

    @property
    def boot_root(self) -> Path: ...


def parse(table: dict) -> RsyncdConfig:
    """The [rsyncd] table, validated."""
    check_keys(table, {"port", "max_connections"}, "rsyncd.")
    return RsyncdConfig(port(table, "port", "rsyncd.", 873),
                        positive(table, "max_connections", "rsyncd.", 64))

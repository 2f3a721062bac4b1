"""What DHCP needs of the appliance's state, as narrow protocols the store implements.

DHCP never imports the store: the server is handed one (Context.store), and reads
hosts and writes leases only through these methods.
"""
from __future__ import annotations

from typing import Iterable, Protocol

from services.records import Host, Lease


class HostSource(Protocol):
    def hosts(self) -> list[Host]: ...

    def dynamic_dhcp_images(self) -> set[str]: ...     # images whose hosts take pool addresses

    def data_version(self) -> int: ...                 # moves when another connection commits


class LeaseSink(Protocol):
    def save_leases(self, leases: Iterable[Lease]) -> None: ...

    def close(self) -> None: ...

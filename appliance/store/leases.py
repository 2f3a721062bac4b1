"""The leases table: every address the DHCP server has handed out."""
from __future__ import annotations

from typing import Iterable

from .records import Lease

_COLUMNS = "mac, ip, hostname, expires, state"


class LeasesMixin:
    def save_leases(self, leases: Iterable[Lease]) -> None:
        """Write a batch of leases in one transaction (group commit)."""
        with self.tx() as db:
            for lease in leases:
                # A new binding for an address frees any stale row holding it.
                db.execute("DELETE FROM leases WHERE ip=? AND mac<>?", (lease.ip, lease.mac))
                db.execute(
                    f"INSERT INTO leases ({_COLUMNS}) VALUES (?,?,?,?,?) ON CONFLICT(mac) DO UPDATE "
                    "SET ip=excluded.ip, hostname=excluded.hostname, expires=excluded.expires, "
                    "state=excluded.state",
                    (lease.mac, lease.ip, lease.hostname, lease.expires, lease.state))

    def save_lease(self, lease: Lease) -> None:
        self.save_leases([lease])

    def leases(self) -> list[Lease]:
        return [Lease(**dict(r)) for r in self.query(f"SELECT {_COLUMNS} FROM leases ORDER BY ip")]

    def lease_for_mac(self, mac: str) -> Lease | None:
        rows = self.query(f"SELECT {_COLUMNS} FROM leases WHERE mac=?", (mac,))
        return Lease(**dict(rows[0])) if rows else None


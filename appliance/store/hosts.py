"""The hosts table: which machine gets which name, address, image and boot."""
from __future__ import annotations

from .records import Host, normalise_mac

_COLUMNS = "hostname, mac, ip, image, grp, netboot, console"


class HostsMixin:
    def upsert_host(self, host: Host) -> None:
        mac = normalise_mac(host.mac) if host.mac else None
        now = self.now()
        with self.tx() as db:
            db.execute(
                f"INSERT INTO hosts ({_COLUMNS}, created, updated) VALUES (?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(hostname) DO UPDATE SET mac=excluded.mac, ip=excluded.ip, "
                "image=excluded.image, grp=excluded.grp, netboot=excluded.netboot, "
                "console=excluded.console, updated=excluded.updated",
                (host.hostname, mac, host.ip, host.image, host.grp, host.netboot, host.console, now, now))

    def host(self, hostname: str) -> Host | None:
        rows = self.query(f"SELECT {_COLUMNS} FROM hosts WHERE hostname=?", (hostname,))
        return Host(**dict(rows[0])) if rows else None

    def host_by_mac(self, mac: str) -> Host | None:
        rows = self.query(f"SELECT {_COLUMNS} FROM hosts WHERE mac=?", (normalise_mac(mac),))
        return Host(**dict(rows[0])) if rows else None

    def host_by_ip(self, ip: str) -> Host | None:
        rows = self.query(f"SELECT {_COLUMNS} FROM hosts WHERE ip=?", (str(ip),))
        return Host(**dict(rows[0])) if rows else None

    def hosts(self) -> list[Host]:
        return [Host(**dict(r)) for r in self.query(f"SELECT {_COLUMNS} FROM hosts ORDER BY hostname")]

    def dynamic_dhcp_images(self) -> set[str]:
        return {r[0] for r in self.query("SELECT name FROM images WHERE ip_method='dynamic_dhcp'")}

    def floats(self, host: Host) -> bool:
        """The DHCP Directory's question, answered from the database (the rule: services/dhcp/hosts.py)."""
        from services.dhcp.hosts import floats
        return floats(host, self.dynamic_dhcp_images())

    def waiting(self) -> list[Host]:
        """The DHCP Directory's hosts waiting for a MAC (the rule: services/dhcp/hosts.waiting)."""
        from services.dhcp.hosts import waiting
        return waiting(self.hosts())

    def set_netboot(self, hostname: str, netboot: str) -> bool:
        with self.tx() as db:
            cur = db.execute("UPDATE hosts SET netboot=?, updated=? WHERE hostname=?",
                             (netboot, self.now(), hostname))
            return cur.rowcount == 1

    def delete_host(self, hostname: str) -> bool:
        with self.tx() as db:
            return db.execute("DELETE FROM hosts WHERE hostname=?", (hostname,)).rowcount == 1

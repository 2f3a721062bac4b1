"""si mkdhcpstatic: turn current DHCP leases into reservations (SystemImager's idea).

For each lease whose address belongs to a host in the hosts table (matched by
IP, or by hostname for a host without an address), record the lease's MAC on
that host, so the host keeps its address for good. Prints what changed.
"""
from __future__ import annotations

from dataclasses import replace

from ._common import add_config_arg, load_config, open_store


def register(sub) -> None:
    p = sub.add_parser("mkdhcpstatic", help="turn current DHCP leases into MAC reservations in the hosts table")
    add_config_arg(p)
    p.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    p.set_defaults(func=mkdhcpstatic)


def plan(store) -> tuple[list[tuple], list[str]]:
    """[(old host, new host)] to apply, and notes about leases that could not be used."""
    changes, notes = [], []
    claimed: dict[str, str] = {}          # mac -> hostname it is being given to
    for lease in store.leases():
        if lease.state != "bound":
            continue
        host = store.host_by_ip(lease.ip)
        if host is None and lease.hostname:
            named = store.host(lease.hostname)
            if named is not None and not named.ip:
                host = named
        if host is None or host.mac == lease.mac:
            continue
        holder = store.host_by_mac(lease.mac)
        if holder is not None and holder.hostname != host.hostname:
            notes.append(f"{lease.mac} ({lease.ip}) already belongs to {holder.hostname}; "
                         f"not given to {host.hostname}")
            continue
        if claimed.get(lease.mac, host.hostname) != host.hostname:
            notes.append(f"{lease.mac} leased twice; kept for {claimed[lease.mac]}")
            continue
        claimed[lease.mac] = host.hostname
        changes.append((host, replace(host, mac=lease.mac, ip=host.ip or lease.ip)))
    return changes, notes


def mkdhcpstatic(args) -> int:
    store = open_store(load_config(args))
    changes, notes = plan(store)
    for old, new in changes:
        ip_note = f", ip {new.ip}" if old.ip != new.ip else ""
        print(f"{new.hostname}: mac {old.mac or '-'} -> {new.mac}{ip_note}")
        if not args.dry_run:
            store.upsert_host(new)
    for note in notes:
        print(f"skipped: {note}")
    if not changes:
        print("no changes: every leased host already has its MAC")
    elif args.dry_run:
        print("(dry run: nothing changed)")
    return 0

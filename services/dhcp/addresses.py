"""Which addresses of a subnet may never be given to a client, whatever the hosts table says.

One rule for both sides: `si hosts set --ip` refuses such an address with its
reason, and the DHCP policy will not hand one out even if a store holds it
(an edited database, an older version's rows).
"""
from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network


def why_unassignable(ip: IPv4Address, network: IPv4Network, server: IPv4Address,
                     gateway: IPv4Address | None = None) -> str | None:
    """None if `ip` may be a client's address on `network`, else why not (a phrase)."""
    if ip not in network:
        return f"is not in {network}"
    if network.prefixlen < 31:           # /31 and /32 have no network or broadcast address (RFC 3021)
        if ip == network.network_address:
            return f"is the network address of {network}"
        if ip == network.broadcast_address:
            return f"is the broadcast address of {network}"
    if ip == server:
        return "is the install server's own address"
    if ip == gateway:
        return "is the subnet's gateway"
    return None

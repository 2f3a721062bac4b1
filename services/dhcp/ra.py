"""Answer IPv6 router solicitations with "no router here", so PXE firmware stops waiting.

iPXE (and UEFI network stacks) configure IPv4 and IPv6 side by side and hold
the boot until both are done; with no router advertisement on the install
network, the IPv6 side gives up only after about 13 s, on every boot. An
advertisement with router lifetime 0, no prefix and neither M nor O flag ends
that wait at once and configures nothing: hosts take no default route and no
address from it (RFC 4861 6.3.4). We only answer solicitations; we never
advertise unasked.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections import Counter

ICMPV6_RS, ICMPV6_RA = 133, 134
ALL_NODES, ALL_ROUTERS = "ff02::1", "ff02::2"
OPT_SOURCE_LLADDR = 1
HOP_LIMIT = 255               # RFC 4861: receivers drop ND messages with any other hop limit

log = logging.getLogger("si.dhcp.ra")


def is_router_solicitation(data: bytes) -> bool:
    """An ICMPv6 payload (the kernel strips the IPv6 header on raw ICMPv6 sockets)."""
    return len(data) >= 8 and data[0] == ICMPV6_RS and data[1] == 0


def non_router_advertisement(mac: bytes) -> bytes:
    """RA: hop limit unspecified, no M/O flags, router lifetime 0, no prefixes; our MAC as source.

    The checksum field is left 0: the kernel fills it in for raw ICMPv6 sockets.
    """
    if len(mac) != 6:
        raise ValueError("a MAC address is 6 bytes")
    header = struct.pack("!BBHBBHII", ICMPV6_RA, 0, 0, 0, 0, 0, 0, 0)
    return header + struct.pack("!BB", OPT_SOURCE_LLADDR, 1) + mac


def interface_mac(interface: str) -> bytes:
    with open(f"/sys/class/net/{interface}/address") as f:
        return bytes.fromhex(f.read().strip().replace(":", ""))


class RaResponder:
    """A raw ICMPv6 socket on one interface that answers each RS with the RA above."""

    def __init__(self, interface: str, counters: Counter) -> None:
        self.interface = interface
        self.counters = counters
        self.sock: socket.socket | None = None
        self.index = 0                # the interface's index: the scope of link-local replies
        self.advert = b""

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        index = socket.if_nametoindex(self.interface)
        self.advert = non_router_advertisement(interface_mac(self.interface))
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.interface.encode())
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, HOP_LIMIT)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, HOP_LIMIT)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                            socket.inet_pton(socket.AF_INET6, ALL_ROUTERS) + struct.pack("@I", index))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock, self.index = sock, index
        loop.add_reader(sock.fileno(), self._readable)

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.sock is not None:
            loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def _readable(self) -> None:
        for _ in range(64):
            try:
                data, addr = self.sock.recvfrom(1500)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("ICMPv6 receive failed: %s", exc)
                return
            if not is_router_solicitation(data):
                continue             # other ICMPv6 (our own RAs looped back, pings...): not ours
            self.counters["router_solicitations"] += 1
            source = addr[0].split("%")[0]
            # A solicitation from the unspecified address cannot be answered by unicast.
            target = ALL_NODES if source == "::" else source
            try:
                self.sock.sendto(self.advert, (target, 0, 0, self.index))
                self.counters["router_adverts_sent"] += 1
            except OSError as exc:
                log.debug("RA to %s failed: %s", target, exc)

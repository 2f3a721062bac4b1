"""Look for another DHCP server on the install network before (and while) serving.

Two servers handing out addresses on one wire fight over clients, so the
service sends a few DISCOVERs from the client port of its interface and
refuses to start if anyone but itself answers (unless proxy mode or forced).
"""
from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import dataclass
from ipaddress import IPv4Address

from . import packet as P

# Locally administered and recognisable, so our own server can ignore the probes.
PROBE_MAC = bytes.fromhex("02005349ffff")


class RogueServer(RuntimeError):
    """Another DHCP server answers on the interface."""


@dataclass(frozen=True)
class Answer:
    server: str          # its server identifier, or the source address
    source: str
    offered: str


def _socket(interface: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        s.bind(("0.0.0.0", port))
    except OSError:
        s.close()
        raise
    s.setblocking(False)
    return s


def discover(xid: int) -> bytes:
    pkt = P.Packet(op=P.BOOTREQUEST, xid=xid, chaddr=PROBE_MAC, flags=P.FLAG_BROADCAST,
                   options=[(P.OPT_MSG_TYPE, bytes([P.DISCOVER])),
                            (P.OPT_CLIENT_ID, b"\x01" + PROBE_MAC),
                            (P.OPT_PARAM_LIST, bytes([1, 3, 6, 54]))])
    return P.encode(pkt)


async def probe(interface: str, seconds: float, *, server_port: int = 67,
                ignore: IPv4Address | None = None, attempts: int = 3) -> list[Answer]:
    """DISCOVER a few times over `seconds`; return who offered (never `ignore`)."""
    client_port = 68 if server_port == 67 else server_port + 1
    loop = asyncio.get_running_loop()
    sock = _socket(interface, client_port)
    xid = int.from_bytes(os.urandom(4), "big")
    found: dict[str, Answer] = {}
    try:
        deadline = time.monotonic() + seconds
        for attempt in range(attempts):
            try:
                sock.sendto(discover(xid), ("255.255.255.255", server_port))
            except OSError:
                pass
            until = time.monotonic() + seconds / attempts if attempt < attempts - 1 else deadline
            while (left := until - time.monotonic()) > 0:
                try:
                    data, source = await asyncio.wait_for(loop.sock_recvfrom(sock, 2048), left)
                except (asyncio.TimeoutError, TimeoutError):
                    break
                try:
                    pkt = P.decode(data)
                except P.PacketError:
                    continue
                if pkt.xid != xid or pkt.message_type != P.OFFER or pkt.chaddr != PROBE_MAC:
                    continue
                server = pkt.ip_option(P.OPT_SERVER_ID) or IPv4Address(source[0])
                if ignore is not None and server == ignore:
                    continue
                found[str(server)] = Answer(str(server), source[0], str(pkt.yiaddr))
    finally:
        sock.close()
    return list(found.values())

"""Is an address already in use? An ICMP echo before a new address is offered (ping-check).

ISC dhcpd and dnsmasq do the same: a machine that took an address by hand,
or another server's client, answers, and the address is set aside as if a
client had declined it. The codec is apart from the socket: `echo_request`
builds the request, `echo_reply_source` reads a reply off a raw socket.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import socket
import struct
from ipaddress import IPv4Address

ECHO_REPLY, ECHO_REQUEST = 0, 8
PAYLOAD = b"systemimager dhcp ping-check"


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int) -> bytes:
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, checksum(header + PAYLOAD), ident, seq) + PAYLOAD


def echo_reply_source(datagram: bytes, ident: int) -> tuple[IPv4Address, int] | None:
    """(sender, seq) of an echo reply to us in a raw IPv4 datagram; None for anything else."""
    if len(datagram) < 20 or datagram[0] >> 4 != 4:
        return None
    start = (datagram[0] & 0x0F) * 4
    icmp = datagram[start:start + 8]
    if len(icmp) < 8:
        return None
    kind, _code, _sum, their_ident, seq = struct.unpack("!BBHHH", icmp)
    if kind != ECHO_REPLY or their_ident != ident:
        return None
    return IPv4Address(datagram[12:16]), seq


class Pinger:
    """One raw ICMP socket; `answers(ip, timeout)` is True if ip replies in time."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.sock.setblocking(False)
        self.ident = os.getpid() & 0xFFFF
        self.seqs = itertools.count(1)
        self.waiting: dict[tuple[IPv4Address, int], asyncio.Future] = {}
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            reply = echo_reply_source(data, self.ident)
            future = self.waiting.pop(reply, None) if reply else None
            if future is not None and not future.done():
                future.set_result(True)

    async def answers(self, ip: IPv4Address, timeout: float) -> bool:
        seq = next(self.seqs) & 0xFFFF
        future = asyncio.get_running_loop().create_future()
        self.waiting[(ip, seq)] = future
        try:
            self.sock.sendto(echo_request(self.ident, seq), (str(ip), 0))
            return await asyncio.wait_for(future, timeout)
        except (asyncio.TimeoutError, OSError):
            return False
        finally:
            self.waiting.pop((ip, seq), None)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()

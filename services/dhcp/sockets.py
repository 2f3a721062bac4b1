"""UDP sockets for DHCP: bound to one interface, allowed to broadcast."""
from __future__ import annotations

import socket


def bound_udp(interface: str, port: int, *, rcvbuf: int | None = None) -> socket.socket:
    """A non-blocking UDP socket on 0.0.0.0:port that only sees `interface` (SO_BINDTODEVICE)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.bind(("0.0.0.0", port))
    except OSError:
        s.close()
        raise
    s.setblocking(False)
    return s

"""Hand-built DHCP datagrams for tests, independent of the codec under test."""
from __future__ import annotations

import struct

MAGIC = b"\x63\x82\x53\x63"


def opt(code: int, value: bytes) -> bytes:
    return bytes((code, len(value))) + value


def wire(*, op=1, htype=1, hlen=6, xid=0x1234, flags=0, ciaddr=b"\0" * 4, yiaddr=b"\0" * 4,
         siaddr=b"\0" * 4, giaddr=b"\0" * 4, chaddr=bytes.fromhex("525400aabbcc"),
         sname=b"", file=b"", cookie=MAGIC, options: bytes | None = None, end=True) -> bytes:
    if options is None:
        options = opt(53, b"\x01")
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", op, htype, hlen, 0, xid, 0, flags,
                       ciaddr, yiaddr, siaddr, giaddr, chaddr.ljust(16, b"\0"),
                       sname.ljust(64, b"\0"), file.ljust(128, b"\0"))
    return head + cookie + options + (b"\xff" if end else b"")

"""DHCP/BOOTP wire format (RFC 2131, 2132, 3396): bytes <-> Packet, no I/O.

Every malformed input raises PacketError and nothing else, so the server can
catch one error, count it and keep serving. Options are kept in wire order as
(code, value) pairs; a code repeated on the wire is concatenated on read
(RFC 3396) and long values are split on write. Option overload (52) is
honoured both ways: options are read from `file` then `sname` when flagged,
and a reply too large for the client's maximum size spills into them.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address

MAGIC = b"\x63\x82\x53\x63"
HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")  # 236 bytes, then the cookie
MIN_LEN = HEADER.size + len(MAGIC)
MIN_REPLY = 300          # BOOTP's minimum; some PXE ROMs ignore shorter replies
DEFAULT_MAX = 576        # RFC 2131: every client accepts this much

BOOTREQUEST, BOOTREPLY = 1, 2
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
TYPE_NAMES = {DISCOVER: "DISCOVER", OFFER: "OFFER", REQUEST: "REQUEST", DECLINE: "DECLINE",
              ACK: "ACK", NAK: "NAK", RELEASE: "RELEASE", INFORM: "INFORM"}
CLIENT_TYPES = frozenset({DISCOVER, REQUEST, DECLINE, RELEASE, INFORM})
SERVER_TYPES = frozenset({OFFER, ACK, NAK})

# Option codes used by name elsewhere.
PAD, END = 0, 255
OPT_MASK, OPT_ROUTER, OPT_DNS, OPT_HOSTNAME, OPT_DOMAIN, OPT_BROADCAST = 1, 3, 6, 12, 15, 28
OPT_VENDOR_SPECIFIC = 43
OPT_REQUESTED_IP, OPT_LEASE_TIME, OPT_OVERLOAD, OPT_MSG_TYPE, OPT_SERVER_ID = 50, 51, 52, 53, 54
OPT_PARAM_LIST, OPT_MESSAGE, OPT_MAX_SIZE, OPT_T1, OPT_T2 = 55, 56, 57, 58, 59
OPT_VENDOR_CLASS, OPT_CLIENT_ID, OPT_USER_CLASS = 60, 61, 77
OPT_CLIENT_ARCH, OPT_CLIENT_NDI, OPT_UUID = 93, 94, 97
OPT_IMAGE_SERVER = 100   # SystemImager's image-server hint (the manual's choice)
OPT_IPXE_ENCAP = 175

FLAG_BROADCAST = 0x8000


class PacketError(ValueError):
    """The bytes are not a well-formed DHCP message."""


def _fixed(n: int):
    def check(v: bytes) -> bool:
        return len(v) == n
    return check


# Length rules for options whose shape the server relies on; a violation makes
# the whole message malformed rather than half-understood.
_LENGTH_RULES = {
    OPT_MASK: _fixed(4), OPT_REQUESTED_IP: _fixed(4), OPT_LEASE_TIME: _fixed(4),
    OPT_OVERLOAD: _fixed(1), OPT_MSG_TYPE: _fixed(1), OPT_SERVER_ID: _fixed(4),
    OPT_MAX_SIZE: _fixed(2), OPT_T1: _fixed(4), OPT_T2: _fixed(4),
    OPT_CLIENT_ID: lambda v: len(v) >= 2,
    OPT_CLIENT_ARCH: lambda v: len(v) >= 2 and len(v) % 2 == 0,
    OPT_CLIENT_NDI: _fixed(3),
    OPT_UUID: _fixed(17),
    OPT_ROUTER: lambda v: len(v) >= 4 and len(v) % 4 == 0,
    OPT_DNS: lambda v: len(v) >= 4 and len(v) % 4 == 0,
}

_ZERO = IPv4Address(0)
_ZERO_BYTES = bytes(4)


@dataclass(slots=True)
class Packet:
    op: int = BOOTREQUEST
    xid: int = 0
    chaddr: bytes = b""           # hardware address, hlen bytes
    htype: int = 1
    hops: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: IPv4Address = _ZERO
    yiaddr: IPv4Address = _ZERO
    siaddr: IPv4Address = _ZERO
    giaddr: IPv4Address = _ZERO
    sname: bytes = b""
    file: bytes = b""
    options: list[tuple[int, bytes]] = field(default_factory=list)
    # code -> value for decoded packets (codes are unique after decoding); None
    # once anything may have changed. Treat a decoded request as read-only.
    index: dict[int, bytes] | None = field(default=None, repr=False, compare=False)

    # --- option access ---------------------------------------------------
    def get(self, code: int) -> bytes | None:
        """The value of an option (concatenated if it was split), or None."""
        if self.index is not None:
            return self.index.get(code)
        found = [v for c, v in self.options if c == code]
        if not found:
            return None
        return found[0] if len(found) == 1 else b"".join(found)

    def has(self, code: int) -> bool:
        if self.index is not None:
            return code in self.index
        return any(c == code for c, _ in self.options)

    def set(self, code: int, value: bytes) -> None:
        """Replace an option, keeping its place, or append it."""
        self.index = None
        for i, (c, _) in enumerate(self.options):
            if c == code:
                self.options[i] = (code, value)
                self.options[i + 1:] = [(c2, v2) for c2, v2 in self.options[i + 1:] if c2 != code]
                return
        self.options.append((code, value))

    @property
    def message_type(self) -> int:
        value = self.get(OPT_MSG_TYPE)
        return value[0] if value else 0

    @property
    def mac(self) -> str:
        return self.chaddr[:6].hex(":")

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & FLAG_BROADCAST)

    def ip_option(self, code: int) -> IPv4Address | None:
        value = self.get(code)
        return IPv4Address(value) if value is not None and len(value) == 4 else None

    def int_option(self, code: int) -> int | None:
        value = self.get(code)
        return int.from_bytes(value, "big") if value else None

    @property
    def max_size(self) -> int:
        value = self.int_option(OPT_MAX_SIZE)
        return max(DEFAULT_MAX, value) if value is not None else DEFAULT_MAX

    @property
    def client_arches(self) -> tuple[int, ...]:
        value = self.get(OPT_CLIENT_ARCH) or b""
        return tuple(int.from_bytes(value[i:i + 2], "big") for i in range(0, len(value) - 1, 2))

    def reply(self, message_type: int) -> "Packet":
        """A BOOTREPLY answering this request: same xid, chaddr, flags and giaddr."""
        return Packet(op=BOOTREPLY, xid=self.xid, chaddr=self.chaddr, htype=self.htype,
                      flags=self.flags, giaddr=self.giaddr,
                      options=[(OPT_MSG_TYPE, bytes([message_type]))])


# --- decoding ---------------------------------------------------------------

def _read_options(buf: bytes, start: int, end: int, where: str,
                  out: list[tuple[int, bytes]]) -> bool:
    """Append the options of buf[start:end]; True if END was seen."""
    i = start
    while i < end:
        code = buf[i]
        if code == PAD:
            i += 1
            continue
        if code == END:
            return True
        if i + 1 >= end:
            raise PacketError(f"option {code} in {where} has no length byte")
        length = buf[i + 1]
        if i + 2 + length > end:
            raise PacketError(f"option {code} in {where} runs past the end ({length} bytes)")
        out.append((code, buf[i + 2:i + 2 + length]))
        i += 2 + length
    return False


def _merge(raw: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """RFC 3396: instances of one code are one value; keep the first position."""
    if len({c for c, _ in raw}) == len(raw):
        return raw
    merged: dict[int, bytes] = {}
    for code, value in raw:
        merged[code] = merged.get(code, b"") + value
    return list(merged.items())


def decode(data: bytes) -> Packet:
    """Parse one DHCP message; PacketError for anything malformed."""
    if len(data) < MIN_LEN:
        raise PacketError(f"{len(data)} bytes is shorter than a DHCP message ({MIN_LEN})")
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr,
     chaddr, sname, file) = HEADER.unpack_from(data)
    if data[236:240] != MAGIC:
        raise PacketError("missing DHCP magic cookie")
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise PacketError(f"op {op} is neither request nor reply")
    if hlen > 16:
        raise PacketError(f"hlen {hlen} exceeds the 16-byte chaddr field")

    raw: list[tuple[int, bytes]] = []
    if not _read_options(data, MIN_LEN, len(data), "options", raw):
        raise PacketError("options do not end with END")
    overload_count = sum(1 for c, _ in raw if c == OPT_OVERLOAD)
    if overload_count > 1:
        raise PacketError("option 52 (overload) given more than once")
    overload = next((v for c, v in raw if c == OPT_OVERLOAD), None)
    if overload is not None:
        if len(overload) != 1 or overload[0] not in (1, 2, 3):
            raise PacketError(f"option 52 (overload) has invalid value {overload.hex()}")
        # file is read before sname (RFC 2131 4.1); neither may overload again.
        for flag, offset, size, name in ((1, 108, 128, "file"), (2, 44, 64, "sname")):
            if overload[0] & flag:
                extra: list[tuple[int, bytes]] = []
                if not _read_options(data, offset, offset + size, name, extra):
                    raise PacketError(f"overloaded {name} field does not end with END")
                if any(c == OPT_OVERLOAD for c, _ in extra):
                    raise PacketError(f"option 52 (overload) repeated inside {name}")
                raw.extend(extra)
        if overload[0] & 1:
            file = b""
        if overload[0] & 2:
            sname = b""

    types = [v for c, v in raw if c == OPT_MSG_TYPE]
    if len(types) != 1:
        raise PacketError("option 53 (message type) missing" if not types
                          else "option 53 (message type) given more than once")
    options = _merge(raw)
    for code, value in options:
        rule = _LENGTH_RULES.get(code)
        if rule is not None and not rule(value):
            raise PacketError(f"option {code} has invalid length {len(value)}")
    mtype = types[0][0]
    if mtype in CLIENT_TYPES:
        if op != BOOTREQUEST:
            raise PacketError(f"{TYPE_NAMES[mtype]} sent as a BOOTREPLY")
    elif mtype in SERVER_TYPES:
        if op != BOOTREPLY:
            raise PacketError(f"{TYPE_NAMES[mtype]} sent as a BOOTREQUEST")
    else:
        raise PacketError(f"unknown message type {mtype}")

    return Packet(op=op, xid=xid, chaddr=chaddr[:hlen], htype=htype, hops=hops, secs=secs,
                  flags=flags, ciaddr=_addr(ciaddr), yiaddr=_addr(yiaddr),
                  siaddr=_addr(siaddr), giaddr=_addr(giaddr),
                  sname=sname.rstrip(b"\0"), file=file.rstrip(b"\0"), options=options,
                  index=dict(options))


def _addr(raw: bytes) -> IPv4Address:
    return _ZERO if raw == _ZERO_BYTES else IPv4Address(raw)


# --- encoding ---------------------------------------------------------------

def _encode_options(options: list[tuple[int, bytes]]) -> bytes:
    parts = []
    for code, value in options:
        if not 1 <= code <= 254:
            raise PacketError(f"option code {code} cannot be encoded")
        n = len(value)
        if n <= 255:
            parts.append(bytes((code, n)))
            parts.append(value)
            continue
        for i in range(0, n, 255):   # RFC 3396: split long values
            chunk = value[i:i + 255]
            parts.append(bytes((code, len(chunk))))
            parts.append(chunk)
    return b"".join(parts)


def _field(value: bytes, size: int, name: str) -> bytes:
    if len(value) > size:
        raise PacketError(f"{name} is {len(value)} bytes, the field holds {size}")
    return value.ljust(size, b"\0")


def encode(packet: Packet, max_size: int = 1500) -> bytes:
    """Build the wire form; spill options into file/sname (overload) if needed.

    max_size is the whole BOOTP message (the client's option 57, at least 576).
    """
    if len(packet.chaddr) > 16:
        raise PacketError("chaddr longer than 16 bytes")
    options = [(c, v) for c, v in packet.options if c != OPT_OVERLOAD]
    body = _encode_options(options)
    sname, file = packet.sname, packet.file
    room = max_size - MIN_LEN - 1                      # END byte
    if len(body) > room:
        body, sname, file = _overload(options, room, packet.sname, packet.file)
    head = HEADER.pack(packet.op, packet.htype, len(packet.chaddr), packet.hops,
                       packet.xid & 0xFFFFFFFF, packet.secs, packet.flags,
                       packet.ciaddr.packed, packet.yiaddr.packed, packet.siaddr.packed,
                       packet.giaddr.packed, _field(packet.chaddr, 16, "chaddr"),
                       _field(sname, 64, "sname"), _field(file, 128, "file"))
    wire = head + MAGIC + body + b"\xff"
    return wire.ljust(MIN_REPLY, b"\0")


def _overload(options, room, sname: bytes, file: bytes) -> tuple[bytes, bytes, bytes]:
    """Move options that do not fit into the unused file, then sname, fields."""
    fields = []
    if not file:
        fields.append((1, 127))
    if not sname:
        fields.append((2, 63))
    if not fields:
        raise PacketError("options do not fit and file/sname are in use")
    flag = sum(f for f, _ in fields)
    main_room = room - 3                                # the option 52 itself
    parts = {0: bytearray(), 1: bytearray(), 2: bytearray()}
    limits = {0: main_room, **dict(fields)}
    order = [0] + [f for f, _ in fields]
    slot = 0
    for code, value in options:
        piece = _encode_options([(code, value)])
        while len(parts[order[slot]]) + len(piece) > limits[order[slot]]:
            slot += 1
            if slot == len(order):
                raise PacketError("options do not fit even with overload")
        parts[order[slot]] += piece
    main = bytes((OPT_OVERLOAD, 1, flag)) + bytes(parts[0])
    new_file = bytes(parts[1]) + b"\xff" if 1 in limits else file
    new_sname = bytes(parts[2]) + b"\xff" if 2 in limits else sname
    return main, new_sname, new_file


# --- small value helpers ----------------------------------------------------

def ip_bytes(*ips: IPv4Address) -> bytes:
    return b"".join(ip.packed for ip in ips)


def u32(n: int) -> bytes:
    return (n & 0xFFFFFFFF).to_bytes(4, "big")

"""TFTP wire format: bytes <-> dataclasses, no sockets.

RFC 1350 (RRQ, WRQ, DATA, ACK, ERROR) and RFC 2347 (OACK and request
options). Every malformed input raises PacketError and nothing else, so the
server catches one type, counts it and goes on. Option *values* stay strings
here: judging them (blksize range, windowsize 0, ...) is negotiation, which is
the engine's business.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

RRQ, WRQ, DATA, ACK, ERROR, OACK = 1, 2, 3, 4, 5, 6

# Error codes (RFC 1350, 2347).
ERR_UNDEFINED = 0
ERR_NOT_FOUND = 1
ERR_ACCESS = 2
ERR_DISK_FULL = 3
ERR_ILLEGAL_OP = 4
ERR_UNKNOWN_TID = 5
ERR_EXISTS = 6
ERR_NO_USER = 7
ERR_OPTIONS = 8

MAX_REQUEST = 512          # RFC 2347: a request with options fits in 512 octets
MAX_TOKEN = 255            # longest option name or value we take apart


class PacketError(ValueError):
    """The datagram is not a well-formed TFTP packet."""


@dataclass(frozen=True)
class Request:
    opcode: int                       # RRQ or WRQ
    filename: str
    mode: str                         # lower-cased
    options: dict[str, str] = field(default_factory=dict)   # names lower-cased, first one wins

    def encode(self) -> bytes:
        parts = [self.filename, self.mode]
        for name, value in self.options.items():
            parts += [name, value]
        return struct.pack("!H", self.opcode) + b"".join(p.encode("latin-1") + b"\0" for p in parts)


@dataclass(frozen=True)
class Data:
    block: int
    payload: bytes

    def encode(self) -> bytes:
        return struct.pack("!HH", DATA, self.block) + self.payload


@dataclass(frozen=True)
class Ack:
    block: int

    def encode(self) -> bytes:
        return struct.pack("!HH", ACK, self.block)


@dataclass(frozen=True)
class Error:
    code: int
    message: str = ""

    def encode(self) -> bytes:
        return encode_error(self.code, self.message)


@dataclass(frozen=True)
class OAck:
    options: dict[str, str]

    def encode(self) -> bytes:
        return encode_oack(self.options)


Packet = Request | Data | Ack | Error | OAck


def encode_error(code: int, message: str) -> bytes:
    return struct.pack("!HH", ERROR, code) + message.encode("ascii", "replace")[:200] + b"\0"


def encode_oack(options: dict[str, str]) -> bytes:
    return struct.pack("!H", OACK) + b"".join(
        k.encode("ascii") + b"\0" + v.encode("ascii") + b"\0" for k, v in options.items())


def _strings(body: bytes, what: str) -> list[str]:
    """NUL-terminated strings; the body must end with a NUL."""
    if not body.endswith(b"\0"):
        raise PacketError(f"{what}: last string not NUL-terminated")
    # latin-1 maps every byte, so decoding cannot fail; path checks come later.
    return body[:-1].decode("latin-1").split("\0")


def _decode_request(opcode: int, body: bytes) -> Request:
    if len(body) + 2 > MAX_REQUEST:
        raise PacketError(f"request of {len(body) + 2} bytes (over {MAX_REQUEST})")
    tokens = _strings(body, "request")
    if len(tokens) < 2:
        raise PacketError("request without a mode")
    filename, mode, rest = tokens[0], tokens[1], tokens[2:]
    if not filename:
        raise PacketError("empty filename")
    if not mode:
        raise PacketError("empty mode")
    # Some clients pad with one extra NUL; anything else odd is malformed.
    if len(rest) % 2 and rest[-1] == "":
        rest = rest[:-1]
    if len(rest) % 2:
        raise PacketError("odd number of option tokens")
    options: dict[str, str] = {}
    for i in range(0, len(rest), 2):
        name, value = rest[i].lower(), rest[i + 1]
        if not name or len(name) > MAX_TOKEN or len(value) > MAX_TOKEN:
            raise PacketError("empty or oversized option token")
        options.setdefault(name, value)
    return Request(opcode, filename, mode.lower(), options)


def decode(data: bytes) -> Packet:
    """Parse one datagram; raise PacketError for anything malformed."""
    if len(data) < 4:
        raise PacketError(f"datagram of {len(data)} bytes")
    opcode = (data[0] << 8) | data[1]
    if opcode in (RRQ, WRQ):
        return _decode_request(opcode, bytes(data[2:]))
    if opcode == DATA:
        return Data((data[2] << 8) | data[3], bytes(data[4:]))
    if opcode == ACK:
        if len(data) != 4:
            raise PacketError(f"ACK of {len(data)} bytes")
        return Ack((data[2] << 8) | data[3])
    if opcode == ERROR:
        code = (data[2] << 8) | data[3]
        rest = bytes(data[4:])
        message = rest.split(b"\0", 1)[0].decode("latin-1") if rest else ""
        return Error(code, message)
    if opcode == OACK:
        tokens = _strings(bytes(data[2:]), "OACK")
        if len(tokens) % 2:
            raise PacketError("odd number of OACK tokens")
        return OAck({tokens[i].lower(): tokens[i + 1] for i in range(0, len(tokens), 2)})
    raise PacketError(f"unknown opcode {opcode}")

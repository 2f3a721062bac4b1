"""Strict decoding of DNS queries (codec only, no sockets).

dnslib parses whole messages leniently: labels of 64+ bytes, names over 255
bytes and deep chains of backward pointers (Python recursion) all get through
it. A query only needs its header and one question, so this module walks
exactly those with bounded work and raises QueryError for anything else;
dnslib then builds the replies.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER = struct.Struct("!HHHHHH")
MAX_NAME = 255          # wire length, length bytes and root included
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5
EXT_BADVERS = 16        # extended RCODE (RFC 6891): an EDNS version we do not speak
TYPE_OPT, TYPE_IXFR, TYPE_AXFR = 41, 251, 252
EDNS_PAYLOAD = 1232     # the UDP payload size we announce (DNS flag day 2020)


class QueryError(Exception):
    """A query we will not answer normally; `response` is the error reply or None (drop)."""

    def __init__(self, reason: str, response: bytes | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.response = response


@dataclass(frozen=True)
class Query:
    id: int
    flags: int
    labels: tuple[bytes, ...]   # as sent (case kept for the echoed question)
    qtype: int
    qclass: int
    qname_wire: bytes = b""     # the question name exactly as sent (length bytes included)
    edns_version: int | None = None   # the query's OPT record's version; None: no EDNS

    @property
    def rd(self) -> bool:
        return bool(self.flags & 0x0100)

    @property
    def name(self) -> str:
        """Lower-case dotted name without the trailing dot ('' for the root)."""
        return ".".join(label.decode("latin-1") for label in self.labels).lower()


def error_response(data: bytes, rcode: int, query: Query | None = None) -> bytes:
    """Reply echoing id, opcode and RD of a query at least 12 bytes long, and its question if it parsed."""
    ident, flags = struct.unpack_from("!HH", data)
    flags = 0x8000 | (flags & 0x7800) | (flags & 0x0100) | rcode
    if query is None:
        return HEADER.pack(ident, flags, 0, 0, 0, 0)
    reply = HEADER.pack(ident, flags, 1, 0, 0, 0) + query.qname_wire + struct.pack("!HH", query.qtype, query.qclass)
    return with_edns(reply, query)


def with_edns(reply: bytes, query: Query, ext_rcode: int = 0) -> bytes:
    """The reply with an OPT record appended when the query had one (RFC 6891 6.1.1)."""
    if query.edns_version is None:
        return reply
    opt = b"\x00" + struct.pack("!HHIH", TYPE_OPT, EDNS_PAYLOAD, (ext_rcode >> 4) << 24, 0)
    arcount = struct.unpack_from("!H", reply, 10)[0] + 1
    return reply[:10] + struct.pack("!H", arcount) + reply[12:] + opt


def _edns_version(data: bytes, offset: int, arcount: int) -> int | None:
    """The version of an OPT record that is the first additional record after the question, if any."""
    if arcount < 1 or offset + 11 > len(data) or data[offset] != 0:
        return None
    rtype, _payload, ttl = struct.unpack_from("!HHI", data, offset + 1)
    return (ttl >> 16) & 0xFF if rtype == TYPE_OPT else None


def parse_query(data: bytes) -> Query:
    """Decode header and question of a query; QueryError for anything else."""
    if len(data) < HEADER.size:
        raise QueryError("header under 12 bytes")
    ident, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    if flags & 0x8000:
        raise QueryError("QR set: a response, not a query")  # never answer: no loops
    if (flags >> 11) & 0xF != 0:
        raise QueryError("opcode is not QUERY", error_response(data, RCODE_NOTIMP))
    if qdcount != 1:
        raise QueryError(f"qdcount {qdcount}", error_response(data, RCODE_FORMERR))
    labels = []
    offset = HEADER.size
    wire_length = 1
    while True:
        if offset >= len(data):
            raise QueryError("name runs past the end", error_response(data, RCODE_FORMERR))
        length = data[offset]
        if length & 0xC0:
            # 0xC0: a compression pointer; nothing precedes the only question, so it
            # can only loop or point forward. 0x40/0x80: obsolete label types (or a
            # "label" of 64+ bytes).
            raise QueryError("compression pointer or label over 63 bytes in the question",
                             error_response(data, RCODE_FORMERR))
        offset += 1
        if length == 0:
            break
        wire_length += length + 1
        if wire_length > MAX_NAME:
            raise QueryError("name over 255 bytes", error_response(data, RCODE_FORMERR))
        if offset + length > len(data):
            raise QueryError("label runs past the end", error_response(data, RCODE_FORMERR))
        labels.append(bytes(data[offset:offset + length]))
        offset += length
    if offset + 4 > len(data):
        raise QueryError("question without type and class", error_response(data, RCODE_FORMERR))
    qtype, qclass = struct.unpack_from("!HH", data, offset)
    edns = _edns_version(data, offset + 4, arcount) if ancount == nscount == 0 else None
    return Query(ident, flags, tuple(labels), qtype, qclass, bytes(data[HEADER.size:offset]), edns)

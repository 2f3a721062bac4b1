"""The TFTP codec: round trips, the malformed table, tftpy as an independent encoder."""
import struct

import pytest
from hypothesis import given, settings, strategies as st

from services.tftp import packet as P


def test_round_trips():
    for pkt in (P.Request(P.RRQ, "pxelinux.0", "octet", {"blksize": "1468", "tsize": "0"}),
                P.Request(P.WRQ, "x", "netascii"),
                P.Data(65535, b"abc"), P.Data(0, b""), P.Ack(7),
                P.Error(2, "read-only server"), P.OAck({"blksize": "1468", "windowsize": "16"})):
        assert P.decode(pkt.encode()) == pkt


def test_request_names_and_mode_lower_cased_first_option_wins():
    raw = b"\0\1File\0OCTET\0BLKSIZE\0001024\0blksize\0008\0"
    req = P.decode(raw)
    assert req.filename == "File" and req.mode == "octet" and req.options == {"blksize": "1024"}


MALFORMED = {
    "empty": b"",
    "1 byte": b"\0",
    "2 bytes": b"\0\1",
    "3 bytes": b"\0\4\0",
    "opcode 0": b"\0\0abc\0octet\0",
    "opcode 7": b"\0\7abc\0octet\0",
    "opcode 65535": b"\xff\xffabc\0octet\0",
    "no NUL after filename": b"\0\1pxelinux.0",
    "no NUL after mode": b"\0\1pxelinux.0\0octet",
    "no mode": b"\0\1pxelinux.0\0",
    "empty filename": b"\0\1\0octet\0",
    "odd option tokens": b"\0\1f\0octet\0blksize\0",
    "odd option tokens 3": b"\0\1f\0octet\0blksize\0001024\0tsize\0",
    "request over 512 bytes": b"\0\1" + b"a" * 600 + b"\0octet\0",
    "10 KB filename": b"\0\1" + b"a" * 10240 + b"\0octet\0",
    "ACK of 5 bytes": b"\0\4\0\1\0",
    "OACK odd tokens": b"\0\6blksize\0",
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_raise_packet_error(name):
    with pytest.raises(P.PacketError):
        P.decode(MALFORMED[name])


def test_odd_modes_parse_and_are_judged_by_the_server():
    for mode in ("netascii", "mail", "OCTET", "garbage"):
        assert P.decode(b"\0\1f\0" + mode.encode() + b"\0").mode == mode.lower()


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=700))
def test_any_bytes_parse_or_raise_packet_error(data):
    try:
        P.decode(data)
    except P.PacketError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([1, 2, 3, 4, 5, 6]), st.binary(max_size=600))
def test_any_body_after_a_known_opcode(opcode, body):
    try:
        P.decode(struct.pack("!H", opcode) + body)
    except P.PacketError:
        pass


def test_tftpy_encodes_what_we_decode():
    """tftpy's packet classes are an independent encoder (we keep them for that)."""
    from tftpy.TftpPacketTypes import TftpPacketRRQ, TftpPacketACK, TftpPacketERR, TftpPacketOACK
    rrq = TftpPacketRRQ()
    rrq.filename, rrq.mode, rrq.options = "boot/x", "octet", {"blksize": 1468, "tsize": 0}
    assert P.decode(rrq.encode().buffer) == P.Request(P.RRQ, "boot/x", "octet", {"blksize": "1468", "tsize": "0"})
    ack = TftpPacketACK()
    ack.blocknumber = 65535
    assert P.decode(ack.encode().buffer) == P.Ack(65535)
    err = TftpPacketERR()
    err.errorcode = 2
    assert P.decode(err.encode().buffer).code == 2
    oack = TftpPacketOACK()                     # tftpy reads our OACK ...
    oack.buffer = P.OAck({"blksize": "1468", "tsize": "1024"}).encode()
    got = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in oack.decode().options.items()}
    assert got == {"blksize": "1468", "tsize": "1024"}
    theirs = TftpPacketOACK()                   # ... and we read tftpy's
    theirs.options = {"blksize": "1468", "tsize": "1024"}
    assert P.decode(theirs.encode().buffer) == P.OAck({"blksize": "1468", "tsize": "1024"})

"""The DHCP codec: golden packets, scapy as oracle, properties, BAD-INPUTS table."""
from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from scapy.layers.dhcp import BOOTP, DHCP, DHCPRevOptions

from support.dhcp_wire import MAGIC, opt, wire
from services.dhcp import packet as P

MAC = bytes.fromhex("525400aabbcc")

# A DISCOVER captured from QEMU's iPXE ROM (SeaBIOS, virtio-net, MAC 52:54:00:12:34:56).
GOLDEN_IPXE_DISCOVER = bytes.fromhex(
    (Path(__file__).parent / "data" / "dhcp-ipxe-bios-discover.hex").read_text().strip())


def test_golden_ipxe_discover_decodes():
    pkt = P.decode(GOLDEN_IPXE_DISCOVER)
    assert len(GOLDEN_IPXE_DISCOVER) == 400
    assert pkt.op == P.BOOTREQUEST and pkt.xid == 3485963363
    assert pkt.mac == "52:54:00:12:34:56"
    assert pkt.message_type == P.DISCOVER
    assert pkt.max_size == 1472
    assert pkt.client_arches == (0,)
    assert pkt.get(P.OPT_USER_CLASS) == b"iPXE"
    assert pkt.get(P.OPT_VENDOR_CLASS) == b"PXEClient:Arch:00000:UNDI:002001"
    assert [c for c, _ in pkt.options] == [53, 57, 93, 94, 60, 77, 55, 175, 61, 97]
    # Ours and scapy's reading agree on every option: the same codes in the same order, the same values.
    theirs = [o for o in BOOTP(GOLDEN_IPXE_DISCOVER)[DHCP].options if isinstance(o, tuple)]
    codes = [DHCPRevOptions[name][0] if name in DHCPRevOptions else name for name, *_ in theirs]
    assert codes == [c for c, _ in pkt.options]
    for (code, ours), (name, value) in zip(pkt.options, theirs):
        if isinstance(value, int):
            value = value.to_bytes(len(ours), "big")
        elif isinstance(value, list):
            value = bytes(value)
        assert ours == value, (code, name)


def test_golden_reply_bytes():
    reply = P.Packet(op=P.BOOTREPLY, xid=7, chaddr=MAC, yiaddr=IPv4Address("10.0.0.5"),
                     siaddr=IPv4Address("10.0.0.1"), file=b"undionly.kpxe",
                     options=[(53, b"\x02"), (54, bytes([10, 0, 0, 1])), (51, P.u32(3600))])
    wire_bytes = P.encode(reply)
    assert len(wire_bytes) == P.MIN_REPLY
    assert wire_bytes[:4] == b"\x02\x01\x06\x00"
    assert wire_bytes[16:20] == bytes([10, 0, 0, 5])
    assert wire_bytes[108:121] == b"undionly.kpxe"
    assert wire_bytes[236:240] == MAGIC
    assert wire_bytes[240:256] == bytes.fromhex("350102" "36040a000001" "330400000e10" "ff")
    assert P.decode(wire_bytes) == reply


# --- scapy as the independent oracle -----------------------------------------

ips = st.integers(0, 2**32 - 1).map(IPv4Address)
macs = st.binary(min_size=6, max_size=6)
names = st.binary(min_size=1, max_size=40).filter(lambda b: b"\0" not in b)


@settings(max_examples=200, deadline=None)
@given(xid=st.integers(0, 2**32 - 1), mac=macs, flags=st.sampled_from([0, 0x8000]), ciaddr=ips,
       giaddr=ips, mtype=st.sampled_from([1, 3, 4, 7, 8]), hostname=names,
       lease=st.integers(0, 2**32 - 1), requested=ips, arch=st.integers(0, 0xFFFF))
def test_scapy_built_parses_the_same(xid, mac, flags, ciaddr, giaddr, mtype, hostname, lease,
                                     requested, arch):
    built = bytes(BOOTP(op=1, xid=xid, chaddr=mac, flags=flags, ciaddr=str(ciaddr),
                        giaddr=str(giaddr)) /
                  DHCP(options=[("message-type", mtype), ("hostname", hostname),
                                ("lease_time", lease), ("requested_addr", str(requested)),
                                (93, arch.to_bytes(2, "big")), "end"]))
    pkt = P.decode(built)
    assert (pkt.xid, pkt.chaddr, pkt.flags, pkt.ciaddr, pkt.giaddr) == (xid, mac, flags, ciaddr, giaddr)
    assert pkt.message_type == mtype
    assert pkt.get(P.OPT_HOSTNAME) == hostname
    assert pkt.int_option(P.OPT_LEASE_TIME) == lease
    assert pkt.ip_option(P.OPT_REQUESTED_IP) == requested
    assert pkt.client_arches == (arch,)


@settings(max_examples=200, deadline=None)
@given(xid=st.integers(0, 2**32 - 1), mac=macs, yiaddr=ips, siaddr=ips, mtype=st.sampled_from([2, 5, 6]),
       lease=st.integers(0, 2**32 - 1), router=ips, domain=names,
       file=st.binary(max_size=127).filter(lambda b: b"\0" not in b),
       extra=st.lists(st.tuples(st.integers(224, 254), st.binary(max_size=300)), max_size=4))
def test_ours_built_scapy_parses_the_same(xid, mac, yiaddr, siaddr, mtype, lease, router, domain,
                                          file, extra):
    pkt = P.Packet(op=P.BOOTREPLY, xid=xid, chaddr=mac, yiaddr=yiaddr, siaddr=siaddr, file=file,
                   options=[(53, bytes([mtype])), (51, P.u32(lease)), (3, router.packed),
                            (15, domain)] + extra)
    wire_bytes = P.encode(pkt, max_size=65535)
    theirs = BOOTP(wire_bytes)
    assert (theirs.op, theirs.xid, theirs.chaddr[:6]) == (2, xid, mac)
    assert (theirs.yiaddr, theirs.siaddr) == (str(yiaddr), str(siaddr))
    assert theirs.file.rstrip(b"\0") == file
    got = dict(o for o in theirs[DHCP].options if isinstance(o, tuple))
    assert got["message-type"] == mtype
    assert got["lease_time"] == lease
    assert got["router"] == str(router)
    assert got["domain"] == domain
    # scapy shows split (RFC 3396) options as repeated entries; join them per code.
    joined = {}
    for o in theirs[DHCP].options:
        if isinstance(o, tuple) and isinstance(o[0], int):
            joined[o[0]] = joined.get(o[0], b"") + o[1]
    merged = {}
    for code, value in extra:
        merged[code] = merged.get(code, b"") + value
    for code, value in merged.items():
        if value:
            assert joined[code] == value
    ours = P.decode(wire_bytes)                              # and ours reads the same bytes back
    assert (ours.xid, ours.chaddr[:6], ours.yiaddr, ours.siaddr) == (xid, mac, yiaddr, siaddr)
    assert ours.message_type == mtype and ours.int_option(P.OPT_LEASE_TIME) == lease
    assert ours.ip_option(3) == router and ours.get(15) == domain
    for code, value in merged.items():
        assert (ours.get(code) or b"") == value, code


# --- properties ----------------------------------------------------------------

@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_parse_or_raise_packet_error(data):
    try:
        P.decode(data)
    except P.PacketError:
        pass


@settings(max_examples=2000, deadline=None)
@given(tail=st.binary(max_size=400), head=st.sampled_from([wire(options=b"", end=False)[:240],
                                                           GOLDEN_IPXE_DISCOVER[:240]]))
def test_any_options_parse_or_raise_packet_error(head, tail):
    """Random option bytes behind a valid header: the part most likely to break."""
    try:
        pkt = P.decode(head + tail)
    except P.PacketError:
        return
    # Whatever parsed must encode and parse back to the same options.
    again = P.decode(P.encode(pkt, max_size=65535))
    assert again.options == pkt.options


@settings(max_examples=300, deadline=None)
@given(opts=st.lists(st.tuples(st.integers(60, 254).filter(lambda c: c not in (61, 93, 94, 97)),
                               st.binary(max_size=255)), max_size=12, unique_by=lambda t: t[0]))
def test_overload_round_trip(opts):
    """Replies too big for 576 bytes spill into file/sname and still read back whole."""
    pkt = P.Packet(op=P.BOOTREPLY, xid=1, chaddr=MAC, options=[(53, b"\x05")] + opts)
    try:
        wire_bytes = P.encode(pkt, max_size=576)
    except P.PacketError:
        return   # genuinely too big even with overload
    assert len(wire_bytes) <= 576 or len(P._encode_options(pkt.options)) <= 576 - 241
    back = P.decode(wire_bytes)
    assert sorted((c, v) for c, v in back.options if c != 52) == sorted(
        (c, v) for c, v in pkt.options)


def test_overload_used_when_needed():
    big = [(200 + i, bytes([i]) * 60) for i in range(6)]
    pkt = P.Packet(op=P.BOOTREPLY, xid=1, chaddr=MAC, options=[(53, b"\x02")] + big)
    wire_bytes = P.encode(pkt, max_size=576)
    assert len(wire_bytes) <= 576
    back = P.decode(wire_bytes)
    assert back.get(52) in (b"\x01", b"\x03")
    assert all(back.get(c) == v for c, v in big)


def test_long_option_split_and_joined():
    value = bytes(range(256)) * 2
    pkt = P.Packet(op=P.BOOTREPLY, chaddr=MAC, options=[(53, b"\x05"), (250, value)])
    wire_bytes = P.encode(pkt)
    assert P.decode(wire_bytes).get(250) == value


# --- BAD-INPUTS.md, DHCP section ----------------------------------------------

def _sized(n: int) -> bytes:
    good = wire()
    return (good + b"\0" * n)[:n]


BAD = {
    "0 bytes": b"",
    "1 byte": b"\x01",
    "239 bytes": _sized(239),
    "243 bytes": wire(options=opt(53, b"\x01"), end=False),   # 243, no END
    "missing cookie": wire()[:236] + wire()[240:],
    "wrong cookie": wire(cookie=b"\x63\x82\x53\x64"),
    "op 3": wire(op=3),
    "hlen 17": wire(hlen=17),
    "no END": wire(end=False),
    "length past buffer": wire(options=opt(53, b"\x01") + b"\x0c\x20abc", end=False),
    "missing length byte": wire(options=opt(53, b"\x01") + b"\x0c", end=False),
    "53 duplicated": wire(options=opt(53, b"\x01") + opt(53, b"\x03")),
    "53 missing": wire(options=opt(12, b"x")),
    "53 length 0": wire(options=opt(53, b"")),
    "53 length 2": wire(options=opt(53, b"\x01\x01")),
    "53 unknown type": wire(options=opt(53, b"\x63")),
    "op 2 with DISCOVER": wire(op=2),
    "op 1 with OFFER": wire(op=1, options=opt(53, b"\x02")),
    "overload 0": wire(options=opt(53, b"\x01") + opt(52, b"\x00")),
    "overload 4": wire(options=opt(53, b"\x01") + opt(52, b"\x04")),
    "overload length 2": wire(options=opt(53, b"\x01") + opt(52, b"\x01\x01")),
    "overload twice": wire(options=opt(53, b"\x01") + opt(52, b"\x01") + opt(52, b"\x01"),
                           file=b"\xff"),
    "unterminated file": wire(options=opt(53, b"\x01") + opt(52, b"\x01"), file=opt(12, b"x" * 126)),
    "unterminated sname": wire(options=opt(53, b"\x01") + opt(52, b"\x02"), sname=opt(12, b"x" * 62)),
    "overload inside file": wire(options=opt(53, b"\x01") + opt(52, b"\x01"),
                                 file=opt(52, b"\x02") + b"\xff"),
    "option in file runs past it": wire(options=opt(53, b"\x01") + opt(52, b"\x01"),
                                        file=b"\x0c\xff" + b"x" * 126),
    "57 of length 1": wire(options=opt(53, b"\x01") + opt(57, b"\x01")),
    "61 of length 0": wire(options=opt(53, b"\x01") + opt(61, b"")),
    "93 of odd length": wire(options=opt(53, b"\x01") + opt(93, b"\x00\x00\x07")),
    "97 of wrong size": wire(options=opt(53, b"\x01") + opt(97, b"\x00" * 16)),
    "50 of length 3": wire(options=opt(53, b"\x03") + opt(50, b"\x0a\x00\x00")),
    "54 of length 5": wire(options=opt(53, b"\x03") + opt(54, b"\x0a\x00\x00\x01\x02")),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_input_raises_packet_error(name):
    with pytest.raises(P.PacketError):
        P.decode(BAD[name])


GOOD = {
    "overload 1": (wire(options=opt(53, b"\x01") + opt(52, b"\x01"), file=opt(12, b"fromfile") + b"\xff"),
                   {12: b"fromfile"}),
    "overload 2": (wire(options=opt(53, b"\x01") + opt(52, b"\x02"), sname=opt(12, b"fromsname") + b"\xff"),
                   {12: b"fromsname"}),
    "overload 3": (wire(options=opt(53, b"\x01") + opt(52, b"\x03"),
                        file=opt(12, b"a") + b"\xff", sname=opt(12, b"b") + b"\xff"), {12: b"ab"}),
    "57 = 100": (wire(options=opt(53, b"\x01") + opt(57, (100).to_bytes(2, "big"))), {57: b"\x00\x64"}),
    "57 = 65535": (wire(options=opt(53, b"\x01") + opt(57, b"\xff\xff")), {57: b"\xff\xff"}),
    "61 of length 255": (wire(options=opt(53, b"\x01") + opt(61, b"\x01" * 255)), {61: b"\x01" * 255}),
    "unknown arch": (wire(options=opt(53, b"\x01") + opt(93, b"\x12\x34")), {93: b"\x12\x34"}),
    "hostname with junk": (wire(options=opt(53, b"\x01") + opt(12, b"a\nb\"c\0\xff")),
                           {12: b"a\nb\"c\0\xff"}),
    "hlen 0": (wire(hlen=0), {}),
    "pad before END": (wire(options=opt(53, b"\x01") + b"\0\0\0"), {}),
}


@pytest.mark.parametrize("name", GOOD)
def test_odd_but_valid_input_parses(name):
    data, expected = GOOD[name]
    pkt = P.decode(data)
    for code, value in expected.items():
        assert pkt.get(code) == value


def test_max_size_clamped_to_rfc_minimum():
    assert P.decode(GOOD["57 = 100"][0]).max_size == 576
    assert P.decode(GOOD["57 = 65535"][0]).max_size == 65535


def test_overloaded_fields_are_not_file_names():
    pkt = P.decode(GOOD["overload 3"][0])
    assert pkt.file == b"" and pkt.sname == b""

"""DnsService over real sockets on 127.0.0.1: answers, refusal, forwarding, bad inputs."""
from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import time

import pytest
from dnslib import A, QTYPE, RCODE, RR, DNSRecord
from dnslib.server import BaseResolver, DNSServer

from appliance.store.records import Host, Lease
from services.dns.server import DnsService

from support.dns_harness import ServiceThread, free_port, make_ctx

FUTURE = time.time() + 3600


@pytest.fixture
def dns(tmp_path):
    port = free_port()
    ctx = make_ctx(tmp_path, port)
    ctx.store.upsert_host(Host("www1", mac="52:54:00:00:00:01", ip="10.77.0.11", image="img"))
    ctx.store.upsert_host(Host("wpad", ip="10.77.0.66"))
    ctx.store.save_leases([Lease("52:54:00:00:00:09", "10.77.0.109", "laptop", FUTURE),
                           Lease("52:54:00:00:00:0a", "10.77.0.110", "localhost", FUTURE),
                           Lease("52:54:00:00:00:0b", "10.77.0.111", "evil\nname", FUTURE)])
    svc = DnsService(ctx)
    runner = ServiceThread(svc).start()
    yield svc, port, ctx
    runner.stop()
    ctx.store.close()


def ask(port, name, qtype="A", tcp=False) -> DNSRecord:
    return DNSRecord.parse(DNSRecord.question(name, qtype).send("127.0.0.1", port, tcp=tcp, timeout=3))


def raw(port, data: bytes, timeout=0.5) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, ("127.0.0.1", port))
        try:
            return s.recv(65535)
        except socket.timeout:
            return None


def test_a_ptr_nxdomain_refused(dns):
    svc, port, _ = dns
    a = ask(port, "www1.cluster.test")
    assert a.header.rcode == RCODE.NOERROR and a.header.aa and str(a.rr[0].rdata) == "10.77.0.11"
    assert str(ask(port, "laptop.cluster.test").rr[0].rdata) == "10.77.0.109"
    assert str(ask(port, "109.0.77.10.in-addr.arpa", "PTR").rr[0].rdata) == "laptop.cluster.test."
    assert ask(port, "nothere.cluster.test").header.rcode == RCODE.NXDOMAIN
    out = ask(port, "example.com")
    assert out.header.rcode == RCODE.REFUSED and not out.rr and out.header.ra == 0
    tcp = ask(port, "www1.cluster.test", tcp=True)
    assert str(tcp.rr[0].rdata) == "10.77.0.11"
    assert svc.health().counters["refused"] == 1
    assert svc.health().counters["tcp_connections"] == 1


def test_bad_names_never_published(dns):
    _, port, _ = dns
    for name in ("wpad.cluster.test", "localhost.cluster.test"):
        assert ask(port, name).header.rcode == RCODE.NXDOMAIN
    for ip in ("66", "110", "111"):
        assert ask(port, f"{ip}.0.77.10.in-addr.arpa", "PTR").header.rcode == RCODE.NXDOMAIN


def test_zone_follows_store_changes(dns):
    svc, port, ctx = dns
    assert ask(port, "www9.cluster.test").header.rcode == RCODE.NXDOMAIN
    ctx.store.upsert_host(Host("www9", ip="10.77.0.19"))
    ctx.changed("hosts")
    assert str(ask(port, "www9.cluster.test").rr[0].rdata) == "10.77.0.19"


def _header(ident=0x1234, flags=0x0100, qd=1, an=0, ns=0, ar=0) -> bytes:
    return struct.pack("!HHHHHH", ident, flags, qd, an, ns, ar)


QUESTION = b"\x04www1\x07cluster\x04test\x00" + struct.pack("!HH", 1, 1)

# (case, bytes, expected: None = dropped, else the rcode of the error reply)
BAD = [
    ("empty", b"", None),
    ("header of 11 bytes", _header()[:11], None),
    ("QR=1 (a response)", _header(flags=0x8100) + QUESTION, None),
    ("opcode STATUS", _header(flags=0x1100) + QUESTION, RCODE.NOTIMP),
    ("opcode NOTIFY", _header(flags=0x2000) + QUESTION, RCODE.NOTIMP),
    ("qdcount 65535", _header(qd=65535) + QUESTION, RCODE.FORMERR),
    ("qdcount 0", _header(qd=0), RCODE.FORMERR),
    ("pointer loop to itself", _header() + b"\xc0\x0c" + struct.pack("!HH", 1, 1), RCODE.FORMERR),
    ("pointer loop via label", _header() + b"\x01a\xc0\x0c" + struct.pack("!HH", 1, 1), RCODE.FORMERR),
    ("forward pointer", _header() + b"\xc0\x12" + struct.pack("!HH", 1, 1) + b"\x01a\x00", RCODE.FORMERR),
    ("pointer into header", _header() + b"\xc0\x02" + struct.pack("!HH", 1, 1), RCODE.FORMERR),
    ("64-byte label", _header() + b"\x40" + b"a" * 64 + b"\x00" + struct.pack("!HH", 1, 1), RCODE.FORMERR),
    ("name over 255", _header() + b"\x3f" + b"a" * 63 + (b"\x3f" + b"b" * 63) * 3 + b"\x03ccc\x00"
     + struct.pack("!HH", 1, 1), RCODE.FORMERR),
    ("label past the end", _header() + b"\x10abc", RCODE.FORMERR),
    ("no terminating root", _header() + b"\x03abc", RCODE.FORMERR),
    ("no qtype/qclass", _header() + b"\x03abc\x00\x00", RCODE.FORMERR),
]


@pytest.mark.parametrize("case, data, expected", BAD, ids=[c[0] for c in BAD])
def test_bad_input_dropped_or_error_and_server_keeps_serving(dns, case, data, expected):
    svc, port, _ = dns
    before = svc.health().counters.get("malformed", 0)
    reply = raw(port, data, timeout=0.3 if expected is None else 2)
    if expected is None:
        assert reply is None
    else:
        assert reply is not None, f"{case}: no error reply"
        parsed = DNSRecord.parse(reply)
        assert parsed.header.qr == 1 and parsed.header.rcode == expected and not parsed.rr
        assert parsed.header.id == 0x1234
    assert svc.health().counters["malformed"] == before + 1
    assert str(ask(port, "www1.cluster.test").rr[0].rdata) == "10.77.0.11"


def test_deep_backward_pointer_chain_over_tcp(dns):
    """A 60 KB chain of backward pointers in the additional section (would recurse in dnslib)."""
    svc, port, _ = dns
    body = _header(ar=1) + QUESTION
    start = len(body)
    chain = bytearray(b"\x00")
    for i in range(1, 20000):
        chain += struct.pack("!H", 0xC000 | (start + (i - 1) * 2 if i > 1 else start))
    msg = body + bytes(chain) + struct.pack("!HHIH", 1, 1, 0, 0)
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(struct.pack("!H", len(msg)) + msg)
        length = struct.unpack("!H", s.recv(2))[0]
        reply = DNSRecord.parse(s.recv(length))
    assert str(reply.rr[0].rdata) == "10.77.0.11"


def test_any_and_outside_names(dns):
    _, port, _ = dns
    anything = ask(port, "cluster.test", "ANY")
    assert {QTYPE.SOA, QTYPE.NS, QTYPE.A} <= {rr.rtype for rr in anything.rr}
    assert ask(port, "www1.cluster.test", "ANY").rr[0].rtype == QTYPE.A
    for name in ("com", "cluster.test.com", "test", "1.1.168.192.in-addr.arpa"):
        assert ask(port, name, "ANY").header.rcode == RCODE.REFUSED


def test_garbage_flood_keeps_serving(dns):
    import random
    svc, port, _ = dns
    rnd = random.Random(7)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(2000):
            s.sendto(bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 80))), ("127.0.0.1", port))
            if i % 100 == 99:   # pace the flood so the socket buffer never overflows
                assert str(ask(port, "www1.cluster.test").rr[0].rdata) == "10.77.0.11"
    assert svc.health().counters["queries"] >= 2020
    assert svc.health().counters["malformed"] > 1000


class _Upstream(BaseResolver):
    def resolve(self, request, handler):
        reply = request.reply()
        if str(request.q.qname) == "example.com.":
            reply.add_answer(RR("example.com.", QTYPE.A, rdata=A("192.0.2.7"), ttl=30))
        else:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


def test_forwarding_to_upstream(tmp_path):
    up_port, port = free_port(), free_port()
    upstream = DNSServer(_Upstream(), address="127.0.0.1", port=up_port)
    upstream.start_thread()
    ctx = make_ctx(tmp_path, port, upstream=["127.0.0.1"])
    ctx.store.upsert_host(Host("www1", ip="10.77.0.11"))
    svc = DnsService(ctx)
    svc.upstreams = [("127.0.0.1", up_port)]   # config holds addresses (port 53); tests use a high port
    runner = ServiceThread(svc).start()
    try:
        fwd = ask(port, "example.com")
        assert fwd.header.rcode == RCODE.NOERROR and str(fwd.rr[0].rdata) == "192.0.2.7"
        assert ask(port, "nx.example.org").header.rcode == RCODE.NXDOMAIN
        assert str(ask(port, "www1.cluster.test").rr[0].rdata) == "10.77.0.11"   # ours stays ours
        assert str(ask(port, "example.com", tcp=True).rr[0].rdata) == "192.0.2.7"
        assert svc.health().counters["forwarded"] == 3
        upstream.stop()
        dead = ask(port, "example.com")
        assert dead.header.rcode == RCODE.SERVFAIL
        assert svc.health().counters["forward_failed"] == 1
    finally:
        runner.stop()
        upstream.stop()
        ctx.store.close()


def test_dig_interop(dns):
    dig = shutil.which("dig")
    assert dig, "dig is missing: apt-get install bind9-dnsutils"
    _, port, _ = dns

    def query(*args):
        return subprocess.run([dig, "@127.0.0.1", "-p", str(port), "+tries=1", "+time=2", *args],
                              capture_output=True, text=True, timeout=10).stdout

    assert query("+short", "www1.cluster.test").strip() == "10.77.0.11"
    assert query("+short", "-x", "10.77.0.11").strip() == "www1.cluster.test."
    assert "status: NXDOMAIN" in query("nope.cluster.test")
    assert "status: REFUSED" in query("example.com")
    assert query("+short", "+tcp", "www1.cluster.test").strip() == "10.77.0.11"
    assert "cluster.test." in query("+short", "cluster.test", "SOA")


def test_registered_with_the_supervisor(tmp_path):
    from appliance.supervisor import build_services
    ctx = make_ctx(tmp_path, free_port())
    services = {s.name: s for s in build_services(ctx)}
    assert isinstance(services["dns"], DnsService)
    assert {str(e) for e in services["dns"].endpoints()} >= {f"udp/127.0.0.1:{ctx.config.dns.port}"}
    ctx.store.close()


def test_zone_follows_writes_from_another_process(dns):
    """The CLI writes the database through its own connection and tells nobody."""
    from appliance.store import Store
    svc, port, ctx = dns
    assert ask(port, "www8.cluster.test").header.rcode == RCODE.NXDOMAIN
    other = Store(ctx.store.path)
    other.upsert_host(Host("www8", ip="10.77.0.18"))
    other.close()
    deadline = time.time() + 3
    while time.time() < deadline and ask(port, "www8.cluster.test").header.rcode != RCODE.NOERROR:
        time.sleep(0.1)
    assert str(ask(port, "www8.cluster.test").rr[0].rdata) == "10.77.0.18"
    assert str(ask(port, "18.0.77.10.in-addr.arpa", "PTR").rr[0].rdata) == "www8.cluster.test."


def test_refusals_echo_the_question(dns):
    """A REFUSED answer carries the question it refuses (a bare header confused resolvers)."""
    _, port, _ = dns
    out = ask(port, "example.com")
    assert out.header.rcode == RCODE.REFUSED and out.header.q == 1 and str(out.q.qname) == "example.com."


def test_zone_transfers_are_refused(dns):
    svc, port, _ = dns
    for tcp in (False, True):
        out = ask(port, "cluster.test", "AXFR", tcp=tcp)
        assert out.header.rcode == RCODE.REFUSED and not out.rr and out.header.q == 1
    assert svc.counters["refused_transfers"] == 2


def test_edns_queries_get_an_opt_record_and_unknown_versions_badvers(dns):
    from dnslib import EDNS0
    _, port, _ = dns
    q = DNSRecord.question("www1.cluster.test")
    q.add_ar(EDNS0(udp_len=4096))
    out = DNSRecord.parse(q.send("127.0.0.1", port, timeout=3))
    assert str(out.rr[0].rdata) == "10.77.0.11"
    opt = [r for r in out.ar if r.rtype == QTYPE.OPT]
    assert len(opt) == 1 and opt[0].rclass == 1232
    plain = ask(port, "www1.cluster.test")
    assert not [r for r in plain.ar if r.rtype == QTYPE.OPT], "no OPT unless asked with EDNS"
    q = DNSRecord.question("www1.cluster.test")
    q.add_ar(EDNS0(version=1))
    out = DNSRecord.parse(q.send("127.0.0.1", port, timeout=3))
    opt = [r for r in out.ar if r.rtype == QTYPE.OPT]
    assert not out.rr and len(opt) == 1 and (opt[0].ttl >> 24) == 1, "extended RCODE 16: BADVERS"

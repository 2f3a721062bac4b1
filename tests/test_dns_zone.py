"""The zone and resolver without sockets: names, hosts vs leases, A/PTR/SOA/NS."""
from __future__ import annotations

import time
from ipaddress import IPv4Address, IPv4Network

import pytest
from dnslib import QTYPE, DNSRecord, RCODE

from appliance.store.records import Host, Lease
from services.dns import wire
from services.dns.names import sanitise_hostname
from services.dns.zone import Resolver, build_zone

DOMAIN = "cluster.test"
NET = IPv4Network("10.77.0.0/24")
FUTURE = time.time() + 3600


@pytest.mark.parametrize("raw, expected", [
    ("www1", "www1"), ("WWW1", "www1"), ("www1.cluster.test.", "www1"), ("node7.other.org", "node7"),
    (b"node8", "node8"), ("wpad", None), ("WPAD", None), ("localhost", None), ("wpad.cluster.test", None),
    ("bad\nname", None), ("a,b", None), ('q"uote', None), ("nul\x00", None), (b"\xff\xfe", None),
    ("x" * 64, None), ("x" * 255, None), ("-lead", None), ("trail-", None), ("under_score", None),
    ("", None), (None, None), ("  spaced  ", "spaced"), ("ünïcode", None),
])
def test_sanitise_hostname(raw, expected):
    assert sanitise_hostname(raw, DOMAIN) == expected


def _resolver(hosts=(), leases=()):
    return Resolver(build_zone(DOMAIN, IPv4Address("10.77.0.1"), [NET], hosts, leases))


def _ask(resolver, name, qtype="A"):
    data = resolver.answer(wire.parse_query(DNSRecord.question(name, qtype).pack()))
    return None if data is None else DNSRecord.parse(data)


def test_hosts_and_leases_published_with_precedence():
    hosts = [Host("www1", mac="52:54:00:00:00:01", ip="10.77.0.11"),
             Host("www2", mac="52:54:00:00:00:02"),          # address comes from its lease
             Host("wpad", ip="10.77.0.66"), Host("bad name", ip="10.77.0.67")]
    leases = [Lease("52:54:00:00:00:02", "10.77.0.102", "ignored-client-name", FUTURE),
              Lease("52:54:00:00:00:03", "10.77.0.103", "Laptop.home.lan", FUTURE),
              Lease("52:54:00:00:00:04", "10.77.0.104", "www1", FUTURE),      # may not steal a host name
              Lease("52:54:00:00:00:05", "10.77.0.105", "localhost", FUTURE),
              Lease("52:54:00:00:00:06", "10.77.0.106", "gone", time.time() - 5),
              Lease("52:54:00:00:00:07", "10.77.0.107", "freed", FUTURE, state="released")]
    zone = build_zone(DOMAIN, IPv4Address("10.77.0.1"), [NET], hosts, leases)
    assert {k: str(v) for k, v in zone.forward.items()} == {
        "www1": "10.77.0.11", "www2": "10.77.0.102", "laptop": "10.77.0.103"}
    assert zone.skipped == 3   # wpad, "bad name", localhost


def test_answers():
    r = _resolver([Host("www1", ip="10.77.0.11")])
    a = _ask(r, "www1.cluster.test")
    assert a.header.aa == 1 and a.header.rcode == RCODE.NOERROR
    assert [(str(rr.rname), str(rr.rdata)) for rr in a.rr] == [("www1.cluster.test.", "10.77.0.11")]
    assert str(_ask(r, "WWW1.Cluster.Test").rr[0].rdata) == "10.77.0.11"       # case-insensitive
    ptr = _ask(r, "11.0.77.10.in-addr.arpa", "PTR")
    assert str(ptr.rr[0].rdata) == "www1.cluster.test."
    nx = _ask(r, "nope.cluster.test")
    assert nx.header.rcode == RCODE.NXDOMAIN and nx.auth[0].rtype == QTYPE.SOA
    nodata = _ask(r, "www1.cluster.test", "AAAA")
    assert nodata.header.rcode == RCODE.NOERROR and not nodata.rr and nodata.auth[0].rtype == QTYPE.SOA
    soa = _ask(r, "cluster.test", "SOA")
    assert soa.rr[0].rtype == QTYPE.SOA
    assert str(_ask(r, "cluster.test", "NS").rr[0].rdata) == "cluster.test."
    assert str(_ask(r, "cluster.test", "A").rr[0].rdata) == "10.77.0.1"        # the NS has an address
    assert _ask(r, "12.0.77.10.in-addr.arpa", "PTR").header.rcode == RCODE.NXDOMAIN
    assert _ask(r, "0.77.10.in-addr.arpa", "SOA").rr[0].rtype == QTYPE.SOA
    assert _ask(r, "x.0.77.10.in-addr.arpa", "PTR").header.rcode == RCODE.NXDOMAIN
    anything = _ask(r, "www1.cluster.test", "ANY")
    assert [rr.rtype for rr in anything.rr] == [QTYPE.A]


def test_not_ours():
    r = _resolver([Host("www1", ip="10.77.0.11")])
    assert _ask(r, "example.com") is None
    assert _ask(r, "cluster.test.evil.com") is None
    assert _ask(r, "1.0.168.192.in-addr.arpa", "PTR") is None     # outside our subnets
    assert _ask(r, "", "NS") is None                                # the root
    chaos = DNSRecord.question("version.bind", "TXT", "CH")
    assert r.answer(wire.parse_query(chaos.pack())) is None


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_query_error(data):
    r = _resolver([Host("www1", ip="10.77.0.11")])
    try:
        query = wire.parse_query(data)
    except wire.QueryError as exc:
        assert exc.response is None or len(exc.response) == 12
        return
    reply = r.answer(query)
    assert reply is None or DNSRecord.parse(reply).header.id == query.id


def test_cached_replies_echo_id_rd_and_spelling():
    r = _resolver([Host("www1", ip="10.77.0.11")])
    first = DNSRecord.question("www1.cluster.test")
    first.header.id, first.header.rd = 111, 1
    second = DNSRecord.question("WwW1.CLUSTER.test")
    second.header.id, second.header.rd = 222, 0
    a = DNSRecord.parse(r.answer(wire.parse_query(first.pack())))
    b = DNSRecord.parse(r.answer(wire.parse_query(second.pack())))      # served from the cache
    assert (a.header.id, a.header.rd, str(a.q.qname)) == (111, 1, "www1.cluster.test.")
    assert (b.header.id, b.header.rd, str(b.q.qname)) == (222, 0, "WwW1.CLUSTER.test.")
    assert str(b.rr[0].rdata) == "10.77.0.11" and b.header.aa == 1

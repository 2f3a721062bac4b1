"""The install domain's zone and the answers to queries about it (no I/O).

Built from the config, the hosts table and the leases; `answer()` turns one
decoded Query into reply bytes, or returns None when the name is not ours (the
server then forwards it or says REFUSED).
"""
from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Iterable

from dnslib import A, DNSHeader, DNSLabel, DNSQuestion, DNSRecord, NS, PTR, QTYPE, RR, SOA

from .names import sanitise_hostname
from .wire import RCODE_NXDOMAIN, Query

TTL = 60                 # short: leases and netboot states change during installs
MAX_UDP = 512
CACHE_LIMIT = 4096       # rendered replies kept per zone build (cleared when full)
QTYPE_ANY = 255
CLASS_IN, CLASS_ANY = 1, 255
REVERSE_SUFFIX = "in-addr.arpa"


@dataclass
class ZoneData:
    domain: str
    server: IPv4Address
    networks: tuple[IPv4Network, ...]
    forward: dict[str, IPv4Address] = field(default_factory=dict)
    reverse: dict[IPv4Address, str] = field(default_factory=dict)
    skipped: int = 0      # names that were not publishable
    serial: int = 1


def _ip(text) -> IPv4Address | None:
    try:
        return IPv4Address(str(text))
    except ValueError:
        return None


def build_zone(domain: str, server: IPv4Address, networks: Iterable[IPv4Network],
               hosts, leases, now: float | None = None, serial: int = 1) -> ZoneData:
    """Hosts win over leases; a lease of a known MAC is published under the host's name only."""
    now = time.time() if now is None else now
    zone = ZoneData(domain.lower().rstrip("."), server, tuple(networks), serial=serial)
    active = sorted((l for l in leases if l.state == "bound" and l.expires > now),
                    key=lambda l: l.expires, reverse=True)
    lease_by_mac = {}
    for lease in active:
        lease_by_mac.setdefault(lease.mac, lease)
    host_macs = set()
    for host in hosts:
        if host.mac:
            host_macs.add(host.mac)
        name = sanitise_hostname(host.hostname, zone.domain)
        if name is None:
            zone.skipped += 1
            continue
        ip = _ip(host.ip) if host.ip else None
        if ip is None and host.mac in lease_by_mac:
            ip = _ip(lease_by_mac[host.mac].ip)
        if ip is not None:
            zone.forward[name] = ip
            zone.reverse.setdefault(ip, name)
    for lease in active:
        if lease.mac in host_macs or not lease.hostname:
            continue
        name = sanitise_hostname(lease.hostname, zone.domain)
        ip = _ip(lease.ip)
        if name is None or ip is None:
            zone.skipped += 1
            continue
        if name not in zone.forward:      # newest lease first; first one keeps the name
            zone.forward[name] = ip
            zone.reverse.setdefault(ip, name)
    return zone


def reverse_apex(network: IPv4Network) -> tuple[int, ...]:
    """The octets of the reverse zone covering a subnet (whole octets only)."""
    return tuple(network.network_address.packed[:max(1, network.prefixlen // 8)])


def _octet(label: str) -> int | None:
    if not label.isdigit() or (len(label) > 1 and label[0] == "0") or int(label) > 255:
        return None
    return int(label)


class Resolver:
    def __init__(self, zone: ZoneData, recursion_available: bool = False) -> None:
        self.zone = zone
        self.ra = recursion_available
        # The zone is fixed for this resolver's life, so a reply depends only on
        # (name, type, class): render it once with dnslib (slow, ~0.5 ms), then
        # per query patch the id, the RD bit and the question's spelling.
        self._cache: dict[tuple[str, int, int], bytes | None] = {}

    # --- records ---------------------------------------------------------
    def _soa(self, apex: str) -> RR:
        d = self.zone.domain
        return RR(apex, QTYPE.SOA, ttl=TTL,
                  rdata=SOA(d + ".", f"hostmaster.{d}.", (self.zone.serial, 3600, 600, 86400, TTL)))

    def _ns(self, apex: str) -> RR:
        return RR(apex, QTYPE.NS, ttl=TTL, rdata=NS(self.zone.domain + "."))

    def _reply(self, query: Query, answers=(), authority=(), rcode: int = 0) -> bytes:
        header = DNSHeader(id=query.id, qr=1, aa=1, ra=int(self.ra), rd=int(query.rd), rcode=rcode)
        reply = DNSRecord(header, q=DNSQuestion(DNSLabel(list(query.labels)), query.qtype, query.qclass))
        for rr in answers:
            reply.add_answer(rr)
        for rr in authority:
            reply.add_auth(rr)
        data = reply.pack()
        if len(data) > MAX_UDP:   # not expected for this zone; the client retries over TCP
            reply.rr, reply.auth, reply.header.tc = [], [], 1
            data = reply.pack()
        return bytes(data)

    def _apex_records(self, query: Query, apex: str, extra: list[RR]) -> bytes:
        wanted = {QTYPE.SOA: [self._soa(apex)], QTYPE.NS: [self._ns(apex)]}
        if query.qtype == QTYPE_ANY:
            return self._reply(query, [self._soa(apex), self._ns(apex), *extra])
        if query.qtype in wanted:
            return self._reply(query, wanted[query.qtype])
        same = [rr for rr in extra if rr.rtype == query.qtype]
        return self._reply(query, same, [] if same else [self._soa(apex)])

    # --- answering ---------------------------------------------------------
    def answer(self, query: Query) -> bytes | None:
        key = (query.name, query.qtype, query.qclass)
        try:
            template = self._cache[key]
        except KeyError:
            canonical = Query(0, 0, tuple(label.lower() for label in query.labels), query.qtype, query.qclass)
            template = self._answer(canonical)
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = template
        if template is None:
            return None
        reply = bytearray(template)
        reply[0:2] = query.id.to_bytes(2, "big")
        reply[2] |= (query.flags >> 8) & 0x01                     # echo RD
        if query.qname_wire:                                      # same length: pointers stay valid
            reply[12:12 + len(query.qname_wire)] = query.qname_wire
        return bytes(reply)

    def _answer(self, query: Query) -> bytes | None:
        name = query.name
        domain = self.zone.domain
        if query.qclass not in (CLASS_IN, CLASS_ANY) or any(b"." in l for l in query.labels):
            return None
        if name == domain or name.endswith("." + domain):
            return self._forward(query, name, domain)
        if name == REVERSE_SUFFIX or name.endswith("." + REVERSE_SUFFIX):
            return self._reverse(query, name)
        return None

    def _forward(self, query: Query, name: str, domain: str) -> bytes:
        apex = domain + "."
        if name == domain:
            return self._apex_records(query, apex, [RR(apex, QTYPE.A, ttl=TTL, rdata=A(str(self.zone.server)))])
        short = name[: -len(domain) - 1]
        ip = self.zone.forward.get(short)
        if ip is None:
            return self._reply(query, authority=[self._soa(apex)], rcode=RCODE_NXDOMAIN)
        if query.qtype in (QTYPE.A, QTYPE_ANY):
            return self._reply(query, [RR(name + ".", QTYPE.A, ttl=TTL, rdata=A(str(ip)))])
        return self._reply(query, authority=[self._soa(apex)])     # NODATA

    def _reverse(self, query: Query, name: str) -> bytes | None:
        labels = name[: -len(REVERSE_SUFFIX) - 1].split(".") if name != REVERSE_SUFFIX else []
        octets = [_octet(label) for label in reversed(labels)]
        for network in self.zone.networks:
            apex_octets = reverse_apex(network)
            if tuple(octets[:len(apex_octets)]) != apex_octets:
                continue
            apex = ".".join(str(o) for o in reversed(apex_octets)) + "." + REVERSE_SUFFIX + "."
            if None in octets or len(octets) > 4:
                return self._reply(query, authority=[self._soa(apex)], rcode=RCODE_NXDOMAIN)
            if len(octets) == 4:
                ip = IPv4Address(bytes(octets))
                if ip not in network:
                    continue
                target = self.zone.reverse.get(ip)
                if target is None:
                    return self._reply(query, authority=[self._soa(apex)], rcode=RCODE_NXDOMAIN)
                if query.qtype in (QTYPE.PTR, QTYPE_ANY):
                    rdata = PTR(f"{target}.{self.zone.domain}.")
                    return self._reply(query, [RR(name + ".", QTYPE.PTR, ttl=TTL, rdata=rdata)])
                return self._reply(query, authority=[self._soa(apex)])
            partial = ipaddress.ip_network((bytes(octets + [0] * (4 - len(octets))), len(octets) * 8))
            if not partial.overlaps(network):
                continue
            if len(octets) == len(apex_octets):
                return self._apex_records(query, apex, [])
            return self._reply(query, authority=[self._soa(apex)])  # empty non-terminal
        return None

"""Who gets what: (request, state) -> reply or silence, per RFC 2131/2132.

No sockets here. The policy reads the hosts table through a small Directory
interface (reservations: host.mac + host.ip; known hosts get option 12), keeps
addresses in a LeaseBook, and returns a Decision: the reply, where it goes,
and the binding the server must make durable before the reply leaves.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from typing import Callable, Protocol

from services.records import Host

from .settings import Site, SubnetConfig

from . import boot
from . import packet as P
from .addresses import why_unassignable
from .hostnames import sanitise
from .leases import OFFER_HOLD, Binding, LeaseBook

PROXY_PORT = 4011
_ZERO = IPv4Address(0)
_BROADCAST = "255.255.255.255"
# PXE vendor options (43): discovery control 8 = boot the file in this offer, no menus.
_PXE_DISCOVERY_CONTROL = bytes((6, 1, 8, 255))
_IPXE_NO_PXEDHCP = bytes((176, 1, 1))


# Every outcome decide() can give a datagram, each a counter of the service: with
# dropped_malformed (the codec's), policy_errors and ignored_own_probe (the
# server's) they account for every datagram received.
REASONS = (
    "offered", "proxy_offered", "acked", "naked", "released", "declined", "informed",
    "pool_exhausted", "reserved_address_in_use",
    "dropped_malformed_inform", "dropped_malformed_request", "dropped_no_subnet", "dropped_not_ethernet",
    "dropped_not_request", "dropped_proxy_port", "dropped_unexpected_type",
    "ignored_foreign_decline", "ignored_foreign_release", "ignored_not_pxe", "ignored_other_server",
    "ignored_proxy", "ignored_unknown_client",
)


class Directory(Protocol):
    def host_by_mac(self, mac: str) -> Host | None: ...
    def host_by_ip(self, ip: str) -> Host | None: ...
    # Whether the host takes a pool address although it has one of its own (hosts.floats).
    def floats(self, host: Host) -> bool: ...
    # Hosts with an address and no MAC, in name order (node2 before node10): dhcp.in_order.
    def waiting(self) -> list[Host]: ...


@dataclass(frozen=True)
class Arrival:
    packet: P.Packet
    port: int = 67                                   # the local port it came in on
    source: tuple[str, int] = ("0.0.0.0", 68)


@dataclass
class Decision:
    reason: str                                      # counter name: offered, acked, ...
    reply: P.Packet | None = None
    dest: tuple[str, int] | None = None
    binding: Binding | None = None                   # store before the reply is sent
    enrol: Host | None = None                        # record this unknown MAC in hosts
    max_size: int = P.DEFAULT_MAX
    probe: IPv4Address | None = None                 # ping-check this new address before the reply goes


def _drop(reason: str) -> Decision:
    return Decision(reason)


class Policy:
    def __init__(self, cfg: Site, directory: Directory, book: LeaseBook,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.dir = directory
        self.book = book
        self.clock = clock
        self.server_id = cfg.address
        self.home = cfg.subnet_for(cfg.address)
        self.proxy = cfg.dhcp.mode == "proxy"
        self.ping_check = cfg.dhcp.ping_timeout > 0
        self.server_port = cfg.dhcp.port
        self.client_port = 68 if cfg.dhcp.port == 67 else cfg.dhcp.port + 1
        self.hint = cfg.hint_address.packed
        self._subnet_cache: dict[IPv4Address, SubnetConfig | None] = {}
        self._pool_ranges = {id(s): [(int(p.first), int(p.last)) for p in s.pools] for s in cfg.subnets}
        # Per-subnet option bytes, built once instead of on every reply.
        self._static: dict[int, list[tuple[int, bytes]]] = {}
        self._lease_opts: dict[int, list[tuple[int, bytes]]] = {}
        self._server_opt = (P.OPT_SERVER_ID, self.server_id.packed)
        domain = cfg.domain.encode()
        for s in cfg.subnets:
            t = s.lease_time
            self._lease_opts[id(s)] = [(P.OPT_LEASE_TIME, P.u32(t)), (P.OPT_T1, P.u32(t // 2)),
                                       (P.OPT_T2, P.u32(t * 7 // 8))]
            static = [(P.OPT_MASK, s.network.netmask.packed)]
            if s.gateway is not None:
                static.append((P.OPT_ROUTER, s.gateway.packed))
            if s.dns_servers:
                static.append((P.OPT_DNS, P.ip_bytes(*s.dns_servers)))
            self._static[id(s)] = static
        self._tail = {id(s): [(P.OPT_DOMAIN, domain),
                              (P.OPT_BROADCAST, s.network.broadcast_address.packed)]
                      for s in cfg.subnets}

    # --- entry point ---------------------------------------------------------
    def decide(self, arrival: Arrival, now: float | None = None) -> Decision:
        pkt = arrival.packet
        now = self.clock() if now is None else now
        if pkt.op != P.BOOTREQUEST:
            return _drop("dropped_not_request")
        if pkt.htype != 1 or len(pkt.chaddr) != 6:
            return _drop("dropped_not_ethernet")
        host = self.dir.host_by_mac(pkt.mac)
        claimed = None
        if host is None and self.cfg.dhcp.in_order and boot.is_pxe(pkt):
            host = claimed = self._claim(pkt, now)
        if self.proxy:
            return self._proxy(arrival, host)
        if arrival.port == PROXY_PORT:
            return _drop("dropped_proxy_port")
        mtype = pkt.message_type
        subnet = self._subnet(pkt)
        if subnet is None:
            return _drop("dropped_no_subnet")
        if mtype == P.DISCOVER:
            return self._discover(pkt, subnet, host, now)
        if mtype == P.REQUEST:
            decision = self._request(pkt, subnet, host, now)
            if claimed is not None and decision.binding is not None:
                decision.enrol = claimed          # bound: the host has its MAC from now on
            return decision
        if mtype == P.RELEASE:
            return self._release(pkt, now)
        if mtype == P.DECLINE:
            return self._decline(pkt, subnet, now)
        if mtype == P.INFORM:
            return self._inform(pkt, subnet, host)
        return _drop("dropped_unexpected_type")

    # --- message types -------------------------------------------------------
    def _discover(self, pkt: P.Packet, subnet: SubnetConfig, host: Host | None,
                  now: float) -> Decision:
        fixed = self._reservation(host, subnet)
        if fixed is not None and not self.book.available(fixed, pkt.mac, now):
            # reserved with --force while another client still holds it: wait for that lease to end
            return _drop("reserved_address_in_use")
        ip = fixed if fixed is not None else self._pick_dynamic(pkt, subnet, now)
        if ip is None:
            return _drop("pool_exhausted")
        current = self.book.for_mac(pkt.mac)
        # A client already bound to ip keeps its lease; otherwise hold the address briefly.
        renewing = (current is not None and current.ip == ip and current.state == "bound"
                    and current.active(now))
        if not renewing:
            self.book.set(pkt.mac, ip, self._lease_name(pkt, host), now + OFFER_HOLD, "offered")
        reply = self._answer(pkt, P.OFFER, subnet, host, ip, lease=True)
        # A pool address this client does not hold yet may have been taken by hand: ping it first.
        probe = ip if self.ping_check and fixed is None and not renewing else None
        return Decision("offered", reply, self._dest(pkt, reply), enrol=self._enrol(pkt, host),
                        max_size=pkt.max_size, probe=probe)

    def in_use(self, arrival: Arrival, ip: IPv4Address, now: float | None = None) -> Decision:
        """The address offered for arrival answered a ping: set it aside as a DECLINE would, decide again."""
        now = self.clock() if now is None else now
        current = self.book.for_mac(arrival.packet.mac)
        subnet = self._subnet_of(ip)
        if current is not None and current.ip == ip and subnet is not None:
            self.book.release(current, now, "declined", hold=subnet.lease_time)
        return self.decide(arrival, now)

    def _request(self, pkt: P.Packet, subnet: SubnetConfig, host: Host | None,
                 now: float) -> Decision:
        mac = pkt.mac
        server_id = pkt.ip_option(P.OPT_SERVER_ID)
        requested = pkt.ip_option(P.OPT_REQUESTED_IP)
        selecting = False
        if server_id is not None:
            if server_id != self.server_id:
                self.book.forget_offer(mac)   # it chose another server's offer
                return _drop("ignored_other_server")
            if requested is None:
                return self._nak(pkt, "requested address missing")
            target, selecting = requested, True
        elif requested is not None:
            target = requested                # INIT-REBOOT
        elif pkt.ciaddr != _ZERO:
            target = pkt.ciaddr               # RENEWING / REBINDING
        else:
            return _drop("dropped_malformed_request")

        if target not in subnet.network:
            return self._nak(pkt, f"{target} is not on this network")
        reserved = self._reservation(host, subnet)
        if reserved is not None:
            if target != reserved:
                return self._nak(pkt, f"this client is reserved {reserved}")
            if not self.book.available(target, mac, now):
                return self._nak(pkt, f"{target} is still leased to another client")
        else:
            other = self.dir.host_by_ip(str(target))
            if other is not None and other.mac != mac:
                return self._nak(pkt, f"{target} is reserved for another host")
            if not self._in_pool(subnet, target):
                return self._nak(pkt, f"{target} is outside the pools")
            current = self.book.for_mac(mac)
            holder = self.book.holder(target, now)
            if holder is not None and holder.mac != mac:
                return self._nak(pkt, f"{target} is leased to another client")
            if not selecting:
                if current is None:
                    # RFC 2131 4.3.2: no record of this client -> remain silent.
                    return _drop("ignored_unknown_client")
                if current.ip != target or current.state == "declined":
                    return self._nak(pkt, f"{target} is not this client's address")
            elif current is not None and current.ip == target and current.state == "declined":
                return self._nak(pkt, f"{target} was declined")
        binding = self.book.set(mac, target, self._lease_name(pkt, host),
                                now + subnet.lease_time, "bound")
        reply = self._answer(pkt, P.ACK, subnet, host, target, lease=True)
        return Decision("acked", reply, self._dest(pkt, reply), binding=binding,
                        enrol=self._enrol(pkt, host), max_size=pkt.max_size)

    def _release(self, pkt: P.Packet, now: float) -> Decision:
        server_id = pkt.ip_option(P.OPT_SERVER_ID)
        if server_id is not None and server_id != self.server_id:
            return _drop("ignored_other_server")
        current = self.book.for_mac(pkt.mac)
        if current is None or current.ip != pkt.ciaddr or current.state != "bound":
            return _drop("ignored_foreign_release")
        return Decision("released", binding=self.book.release(current, now))

    def _decline(self, pkt: P.Packet, subnet: SubnetConfig, now: float) -> Decision:
        server_id = pkt.ip_option(P.OPT_SERVER_ID)
        if server_id is not None and server_id != self.server_id:
            return _drop("ignored_other_server")
        requested = pkt.ip_option(P.OPT_REQUESTED_IP)
        current = self.book.for_mac(pkt.mac)
        if current is None or requested is None or current.ip != requested:
            return _drop("ignored_foreign_decline")
        # The address is in use by someone we do not know: set it aside a lease time.
        return Decision("declined", binding=self.book.release(current, now, "declined",
                                                              hold=subnet.lease_time))

    def _inform(self, pkt: P.Packet, subnet: SubnetConfig, host: Host | None) -> Decision:
        if pkt.ciaddr == _ZERO:
            return _drop("dropped_malformed_inform")
        reply = self._answer(pkt, P.ACK, subnet, host, _ZERO, lease=False)
        return Decision("informed", reply, self._dest(pkt, reply), max_size=pkt.max_size)

    # --- proxyDHCP -----------------------------------------------------------
    def _proxy(self, arrival: Arrival, host: Host | None) -> Decision:
        pkt = arrival.packet
        choice = boot.choose(pkt, self.cfg)
        if choice is None:
            return _drop("ignored_not_pxe")
        mtype = pkt.message_type
        if arrival.port == PROXY_PORT:
            if mtype not in (P.REQUEST, P.INFORM):
                return _drop("dropped_unexpected_type")
            kind, dest = P.ACK, arrival.source
        elif mtype == P.DISCOVER:
            kind, dest = P.OFFER, None
        elif mtype == P.REQUEST and pkt.ip_option(P.OPT_SERVER_ID) == self.server_id:
            kind, dest = P.ACK, None
        else:
            return _drop("ignored_proxy")
        reply = pkt.reply(kind)
        reply.siaddr = self.server_id
        reply.ciaddr = pkt.ciaddr
        reply.options += [(P.OPT_SERVER_ID, self.server_id.packed),
                          (P.OPT_VENDOR_CLASS, choice.vendor_class or b"PXEClient"),
                          (P.OPT_VENDOR_SPECIFIC, _PXE_DISCOVERY_CONTROL)]
        self._boot(reply, choice)
        self._hint(reply)
        if host is not None:
            reply.options.append((P.OPT_HOSTNAME, host.hostname.encode()))
        dest = dest or self._dest(pkt, reply)
        return Decision("proxy_offered" if kind == P.OFFER else "proxy_acked", reply, dest,
                        enrol=self._enrol(pkt, host), max_size=pkt.max_size)

    # --- helpers -------------------------------------------------------------
    def _subnet(self, pkt: P.Packet) -> SubnetConfig | None:
        if pkt.giaddr != _ZERO:
            return self._subnet_of(pkt.giaddr)
        if pkt.ciaddr != _ZERO and pkt.message_type in (P.REQUEST, P.INFORM, P.RELEASE):
            return self._subnet_of(pkt.ciaddr)
        return self.home

    def _subnet_of(self, ip: IPv4Address) -> SubnetConfig | None:
        try:
            return self._subnet_cache[ip]
        except KeyError:
            if len(self._subnet_cache) > 65536:
                self._subnet_cache.clear()
            found = self._subnet_cache[ip] = self.cfg.subnet_for(ip)
            return found

    def _in_pool(self, subnet: SubnetConfig, ip: IPv4Address) -> bool:
        n = int(ip)
        return any(first <= n <= last for first, last in self._pool_ranges[id(subnet)])

    def _reservation(self, host: Host | None, subnet: SubnetConfig) -> IPv4Address | None:
        """The host's fixed address on this subnet; one no client may have counts as none, and so
        does an installed dynamic_dhcp host's (the manual's "may be assigned a different address
        each time")."""
        if host is None or not host.ip or self.dir.floats(host):
            return None
        try:
            ip = IPv4Address(host.ip)
        except ValueError:
            return None
        return None if why_unassignable(ip, subnet.network, self.server_id, subnet.gateway) else ip

    def _reserved_for_other(self, mac: str) -> Callable[[IPv4Address], bool]:
        def reserved(ip: IPv4Address) -> bool:
            other = self.dir.host_by_ip(str(ip))
            return other is not None and other.mac != mac
        return reserved

    def _pick_dynamic(self, pkt: P.Packet, subnet: SubnetConfig, now: float) -> IPv4Address | None:
        """A pool address for a client without a reservation (its own first, then the one it asks for)."""
        mac = pkt.mac
        reserved = self._reserved_for_other(mac)
        current = self.book.for_mac(mac)
        if (current is not None and current.state != "declined" and current.ip in subnet.network
                and self._in_pool(subnet, current.ip) and self.book.available(current.ip, mac, now)
                and not reserved(current.ip)):
            return current.ip
        wanted = pkt.ip_option(P.OPT_REQUESTED_IP)
        if (wanted is not None and self._in_pool(subnet, wanted)
                and self.book.available(wanted, mac, now) and not reserved(wanted)):
            return wanted
        return self.book.allocate(subnet, mac, now, reserved)

    def _lease_name(self, pkt: P.Packet, host: Host | None) -> str | None:
        return host.hostname if host is not None else sanitise(pkt.get(P.OPT_HOSTNAME))

    def _claim(self, pkt: P.Packet, now: float) -> Host | None:
        """dhcp.in_order: the waiting host this unknown machine becomes, with its MAC. The one it
        was offered comes first; then the first whose address no other machine holds."""
        current = self.book.for_mac(pkt.mac)
        held = str(current.ip) if current is not None else None
        free = None
        for h in self.dir.waiting():                 # stops at the one it holds
            ip = IPv4Address(h.ip)
            if self._subnet_of(ip) is None:
                continue
            if h.ip == held:
                return replace(h, mac=pkt.mac)
            if free is None and self.book.available(ip, pkt.mac, now):
                free = h
                if held is None:
                    break
        return replace(free, mac=pkt.mac) if free is not None else None

    def _enrol(self, pkt: P.Packet, host: Host | None) -> Host | None:
        if host is not None or not self.cfg.dhcp.enrol:
            return None
        return Host(hostname="node-" + pkt.mac.replace(":", ""), mac=pkt.mac, netboot="local")

    def _answer(self, pkt: P.Packet, kind: int, subnet: SubnetConfig, host: Host | None,
                yiaddr: IPv4Address, *, lease: bool) -> P.Packet:
        reply = pkt.reply(kind)
        reply.yiaddr = yiaddr
        reply.ciaddr = pkt.ciaddr if kind == P.ACK else _ZERO
        reply.siaddr = self.server_id
        opts = reply.options
        opts.append(self._server_opt)
        if lease:
            opts += self._lease_opts[id(subnet)]
        opts += self._static[id(subnet)]
        if host is not None:
            opts.append((P.OPT_HOSTNAME, host.hostname.encode()))
        opts += self._tail[id(subnet)]
        choice = boot.choose(pkt, self.cfg)
        if choice is not None:
            self._boot(reply, choice)
            if boot.is_ipxe(pkt):
                # iPXE option 175.176 (no-pxedhcp): everything is in this offer, so iPXE
                # need not wait its 2 s for ProxyDHCP offers before requesting.
                opts.append((P.OPT_IPXE_ENCAP, _IPXE_NO_PXEDHCP))
        self._hint(reply)
        return reply

    def _boot(self, reply: P.Packet, choice: boot.BootChoice) -> None:
        name = choice.file.encode()
        reply.siaddr = self.server_id
        if len(name) < 128:
            reply.file = name
        else:
            reply.options.append((67, name))    # too long for the file field
        if choice.vendor_class and not reply.has(P.OPT_VENDOR_CLASS):
            reply.options.append((P.OPT_VENDOR_CLASS, choice.vendor_class))

    def _hint(self, reply: P.Packet) -> None:
        reply.options.append((P.OPT_IMAGE_SERVER, self.hint))
        reply.options.append((self.cfg.dhcp.site_option, self.hint))

    def _nak(self, pkt: P.Packet, message: str) -> Decision:
        reply = pkt.reply(P.NAK)
        reply.options += [(P.OPT_SERVER_ID, self.server_id.packed),
                          (P.OPT_MESSAGE, message.encode())]
        if pkt.giaddr != _ZERO:
            reply.flags |= P.FLAG_BROADCAST   # RFC 2131 4.3.2: the relay broadcasts it
        return Decision("naked", reply, self._dest(pkt, reply))

    def _dest(self, pkt: P.Packet, reply: P.Packet) -> tuple[str, int]:
        """RFC 2131 4.1: relay, then ciaddr, then broadcast (no ARP injection here)."""
        if pkt.giaddr != _ZERO:
            return str(pkt.giaddr), self.server_port
        if reply.message_type == P.NAK:
            return _BROADCAST, self.client_port
        if pkt.ciaddr != _ZERO:
            return str(pkt.ciaddr), self.client_port
        return _BROADCAST, self.client_port

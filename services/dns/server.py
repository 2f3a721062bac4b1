"""DnsService: UDP and TCP sockets around the zone resolver, plus forwarding.

Listens on the install address and loopback only. Names outside the install
domain are forwarded to cfg.dns.upstream for clients in the configured subnets
(or loopback); with no upstream, or for anyone else, they get REFUSED: never an
open resolver.
"""
from __future__ import annotations

import asyncio
import socket
import struct
import time
from typing import Callable

from services.contract import Endpoint, Health, Service

from . import wire
from .zone import Resolver, build_zone

ZONE_MAX_AGE = 10.0       # rebuild at least this often (leases expire by the clock)
STORE_POLL = 0.5          # how often to ask SQLite whether another process (the CLI) wrote
FORWARD_TIMEOUT = 2.0
MAX_FORWARDS = 256        # queries waiting on upstream at once; more get SERVFAIL
MAX_TCP_CLIENTS = 64
TCP_IDLE = 10.0


class _UpstreamProtocol(asyncio.DatagramProtocol):
    def __init__(self, query_id: int) -> None:
        self.query_id = query_id
        self.reply: asyncio.Future = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr) -> None:
        # Only a response to our id counts; anything else is ignored.
        if len(data) >= 12 and data[2] & 0x80 and struct.unpack_from("!H", data)[0] == self.query_id \
                and not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)


class _UdpListener:
    """A UDP socket drained in batches on readiness (asyncio's datagram transport
    wakes the loop once per datagram; a burst of queries then costs one wakeup)."""

    BATCH = 64

    def __init__(self, service: "DnsService", address: str, port: int) -> None:
        self.service = service
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            self.sock.bind((address, port))
        except OSError:
            self.sock.close()
            raise
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        for _ in range(self.BATCH):
            try:
                data, addr = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:         # e.g. ICMP port unreachable reported for an earlier reply
                continue
            reply = self.service.handle(data, addr[0])
            if isinstance(reply, bytes):
                self._send(reply, addr)
            elif reply is not None:     # a forward in flight
                self.service._spawn(self._send_later(reply, addr))

    def _send(self, data: bytes, addr) -> None:
        try:
            self.sock.sendto(data, addr)
        except OSError as exc:      # full buffer or vanished client: a lost datagram, as UDP allows
            self.service._count("send_failed")
            self.service.log.debug("reply to %s not sent: %s", addr, exc)

    async def _send_later(self, pending, addr) -> None:
        data = await pending
        if data is not None and self.sock.fileno() >= 0:
            self._send(data, addr)

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


class DnsService(Service):
    name = "dns"

    def __init__(self, ctx) -> None:   # appliance.service.Context
        super().__init__(ctx)
        cfg = ctx.config
        self.counters: dict[str, int] = {}
        self.upstreams: list[tuple[str, int]] = [(str(ip), 53) for ip in cfg.dns.upstream]
        self._resolver: Resolver | None = None
        self._built = 0.0
        self._polled = 0.0
        self._store_version = None
        self._serial = 0
        self._tasks: set[asyncio.Task] = set()
        self._tcp_clients = 0
        self._binds: list[str] = []
        ctx.subscribe("hosts", self.invalidate)
        ctx.subscribe("leases", self.invalidate)

    # --- zone --------------------------------------------------------------
    def invalidate(self) -> None:
        self._built = 0.0

    def _written_elsewhere(self, now: float) -> bool:
        """True when another connection committed to the store since we last looked."""
        if now - self._polled < STORE_POLL:
            return False
        self._polled = now
        try:
            version = self.ctx.store.data_version()
        except Exception:           # a store without SQLite underneath: rely on the clock
            return False
        changed, self._store_version = version != self._store_version, version
        return changed

    def resolver(self) -> Resolver:
        now = time.monotonic()
        if self._resolver is None or now - self._built > ZONE_MAX_AGE or self._written_elsewhere(now):
            cfg = self.ctx.config
            zone = build_zone(cfg.domain, cfg.address, [s.network for s in cfg.subnets],
                              self.ctx.store.hosts(), self.ctx.store.leases(), serial=self._serial)
            self._built = now
            self.counters["zone_names"] = len(zone.forward)
            self.counters["zone_skipped_names"] = zone.skipped
            old = self._resolver
            if old is not None and (zone.forward, zone.reverse) == (old.zone.forward, old.zone.reverse):
                return old                        # same content: keep its serial and reply cache
            self._serial = zone.serial = max(self._serial + 1, int(time.time()))
            self._resolver = Resolver(zone, recursion_available=bool(self.upstreams))
            self.counters["zone_builds"] = self.counters.get("zone_builds", 0) + 1
        return self._resolver

    # --- one message -------------------------------------------------------
    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def handle(self, data: bytes, client_ip: str):
        """Reply bytes, None (drop), or an awaitable giving bytes/None (forwarded)."""
        self._count("queries")
        if not self.ctx.config.serves_client(client_ip):
            self._count("refused_clients")     # dropped: no answer, so no reflection either
            return None
        try:
            query = wire.parse_query(data)
        except wire.QueryError as exc:
            self._count("malformed")
            self.log.debug("malformed query from %s: %s", client_ip, exc.reason)
            if exc.response is None:
                self._count("dropped")
            return exc.response
        if query.edns_version not in (None, 0):
            self._count("badvers")
            return wire.with_edns(wire.error_response(data, 0), query, wire.EXT_BADVERS)
        if query.qtype in (wire.TYPE_AXFR, wire.TYPE_IXFR):
            self._count("refused_transfers")          # the zone is ours to serve, not to hand out
            return wire.error_response(data, wire.RCODE_REFUSED, query)
        resolver = self.resolver()
        reply = resolver.answer(query)
        if reply is not None:
            self._count("answered")
            if len(reply) >= 4 and reply[3] & 0x0F == wire.RCODE_NXDOMAIN:
                self._count("nxdomain")
            return wire.with_edns(reply, query)
        if self.upstreams:
            if len(self._tasks) >= MAX_FORWARDS:
                self._count("forward_overload")
                return wire.error_response(data, wire.RCODE_SERVFAIL, query)
            self._count("forwarded")
            return self._forward(data)
        self._count("refused")
        return wire.error_response(data, wire.RCODE_REFUSED, query)

    async def _forward(self, data: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        query_id = struct.unpack_from("!H", data)[0]
        for host, port in self.upstreams:
            transport = None
            try:
                transport, proto = await loop.create_datagram_endpoint(
                    lambda: _UpstreamProtocol(query_id), remote_addr=(host, port))
                transport.sendto(data)
                return await asyncio.wait_for(proto.reply, FORWARD_TIMEOUT)
            except (OSError, asyncio.TimeoutError) as exc:
                self.log.debug("upstream %s:%d failed: %s", host, port, exc)
            finally:
                if transport is not None:
                    transport.close()
        self._count("forward_failed")
        return wire.error_response(data, wire.RCODE_SERVFAIL)

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- TCP -----------------------------------------------------------------
    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._tcp_clients >= MAX_TCP_CLIENTS:
            self._count("tcp_refused")
            writer.close()
            return
        self._tcp_clients += 1
        self._count("tcp_connections")
        self._tasks.add(asyncio.current_task())
        client_ip = (writer.get_extra_info("peername") or ("",))[0]
        try:
            while True:
                (length,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), TCP_IDLE))
                data = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE)
                reply = self.handle(data, client_ip)
                if reply is not None and not isinstance(reply, bytes):
                    reply = await reply
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            pass
        except asyncio.CancelledError:
            writer.close()
            raise
        finally:
            self._tcp_clients -= 1
            self._tasks.discard(asyncio.current_task())
            writer.close()

    # --- service -------------------------------------------------------------
    def _addresses(self) -> list[str]:
        return sorted({str(self.ctx.config.address), "127.0.0.1"})

    async def serve(self, ready: Callable[[], None]) -> None:
        port = self.ctx.config.dns.port
        listeners, servers = [], []
        try:
            self.resolver()
            self._binds = []
            for address in self._addresses():
                listeners.append(_UdpListener(self, address, port))
                servers.append(await asyncio.start_server(self._tcp_client, address, port,
                                                          reuse_address=True))
                self._binds.append(address)
            ready()
            await asyncio.Event().wait()
        finally:
            for listener in listeners:
                listener.close()
            for server in servers:
                server.close()
            tasks = [t for t in self._tasks if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def health(self) -> Health:
        return Health(True, counters=dict(self.counters))

    def endpoints(self) -> list[Endpoint]:
        port = self.ctx.config.dns.port
        return [Endpoint(proto, a, port, f"DNS {self.ctx.config.domain}")
                for a in self._addresses() for proto in ("udp", "tcp")]

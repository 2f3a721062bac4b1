"""The DHCP service: sockets on one interface around the codec and the policy.

Each time the socket is readable we drain every waiting datagram, decide on
all of them, write the resulting leases in one transaction (group commit),
and only then send the replies: no ACK leaves before its lease is stored.
"""
from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections import Counter

from services.contract import Endpoint, Health, Service

from .. import bootloaders
from . import packet as P
from .hosts import HostDirectory
from .leases import Journal, LeaseBook, LeaseWriter
from .policy import PROXY_PORT, Arrival, Decision, Policy
from .ping import Pinger
from .probe import PROBE_MAC, RogueServer, probe
from .ra import RaResponder
from .sockets import bound_udp

BATCH = 256                 # datagrams handled per wake-up at most
REPROBE_SECONDS = 300.0
NOTIFY_SECONDS = 1.0        # at most one "leases changed" notification per second
PING_TRIES = 3              # addresses pinged for one DISCOVER before it goes unanswered


class DhcpService(Service):
    name = "dhcp"
    reprobe_seconds = REPROBE_SECONDS

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.cfg = ctx.config
        self.counters: Counter[str] = Counter()
        self.book = LeaseBook(self.cfg.subnets)
        self.journal = Journal(ctx.store)
        self.hosts = HostDirectory(ctx.store)
        self._announced: dict[str, tuple[str, str]] = {}    # known host's mac -> (address, boot file) told
        self.policy = Policy(self.cfg, self.hosts, self.book)
        ctx.subscribe("hosts", self.hosts.invalidate)
        self.sockets: dict[int, socket.socket] = {}
        self.alarm = ""
        self._notify_pending = False
        self.writer: LeaseWriter | None = None
        self.ra: RaResponder | None = None
        self.pinger: Pinger | None = None
        self._pinging: set[asyncio.Task] = set()

    # --- lifecycle -------------------------------------------------------------
    async def serve(self, ready) -> None:
        cfg = self.cfg
        forced = self.ctx.force
        if cfg.dhcp.mode != "proxy" and cfg.dhcp.probe_seconds > 0:
            rogues = await self._probe()
            if rogues and not forced:
                raise RogueServer(
                    f"another DHCP server answers on {cfg.interface}: "
                    f"{', '.join(a.server for a in rogues)} (offered {rogues[0].offered}); "
                    "switch it off, use dhcp.mode = \"proxy\", or start with --force")
        self.book = LeaseBook(cfg.subnets)
        self.policy = Policy(cfg, self.hosts, self.book)
        self.hosts.invalidate()
        loaded = self.book.load(self.ctx.store.leases())
        loop = asyncio.get_running_loop()
        if str(self.ctx.store.path) != ":memory:":
            self.writer = LeaseWriter(self.ctx.store.reconnect, loop)
        ports = [cfg.dhcp.port] + ([PROXY_PORT] if cfg.dhcp.mode == "proxy" else [])
        try:
            for port in ports:
                sock = bound_udp(cfg.interface, port, rcvbuf=4 << 20)
                self.sockets[port] = sock
                loop.add_reader(sock.fileno(), self._readable, sock, port)
            self.log.info("serving DHCP (%s mode) on %s ports %s, %d leases loaded",
                          cfg.dhcp.mode, cfg.interface, ports, loaded)
            if cfg.dhcp.mode == "server" and cfg.dhcp.answer_router_solicitations:
                self.ra = RaResponder(cfg.interface, self.counters)
                try:
                    self.ra.start(loop)
                except OSError as exc:   # IPv6 off on this interface: PXE clients just wait longer
                    self.log.warning("not answering IPv6 router solicitations on %s: %s", cfg.interface, exc)
                    self.ra = None
            if cfg.dhcp.mode == "server" and cfg.dhcp.ping_timeout > 0:
                try:
                    self.pinger = Pinger()
                except OSError as exc:   # no raw sockets (not root): offer without the check
                    self.log.warning("ping-check off (addresses are offered unprobed): %s", exc)
                    self.policy.ping_check = False
            ready()
            while True:
                await asyncio.sleep(self.reprobe_seconds)
                if cfg.dhcp.mode != "proxy" and cfg.dhcp.probe_seconds > 0:
                    await self._reprobe()
        finally:
            for task in list(self._pinging):
                task.cancel()
            if self.pinger is not None:
                self.pinger.close()
                self.pinger = None
            if self.ra is not None:
                self.ra.stop(loop)
                self.ra = None
            for port, sock in self.sockets.items():
                loop.remove_reader(sock.fileno())
                sock.close()
            self.sockets.clear()
            if self.writer is not None:
                self.writer.close()
                self.writer = None
            self.log.info("stopped; counters %s", dict(sorted(self.counters.items())))

    async def _probe(self):
        cfg = self.cfg
        try:
            return await probe(cfg.interface, cfg.dhcp.probe_seconds, server_port=cfg.dhcp.port,
                               ignore=cfg.address)
        except OSError as exc:
            self.log.warning("cannot probe for other DHCP servers on %s: %s", cfg.interface, exc)
            return []

    async def _reprobe(self) -> None:
        rogues = await self._probe()
        if rogues:
            self.alarm = f"another DHCP server answers: {', '.join(a.server for a in rogues)}"
            self.log.error("ALARM: %s on %s", self.alarm, self.cfg.interface)
            try:
                self.ctx.store.event("dhcp", "rogue-server", self.alarm)
            except Exception:
                self.log.exception("could not record the alarm")
        else:
            self.alarm = ""

    # --- the hot path ----------------------------------------------------------
    def _readable(self, sock: socket.socket, port: int) -> None:
        decisions: list[tuple[Decision, socket.socket, Arrival]] = []
        now = time.time()
        try:
            self.hosts.refresh()
        except Exception:
            self.log.exception("could not read the hosts table; using the last copy")
        for _ in range(BATCH):
            try:
                data, source = sock.recvfrom(4096)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self.counters["receive_errors"] += 1
                self.log.debug("recvfrom: %s", exc)
                break
            self.counters["received"] += 1
            try:
                pkt = P.decode(data)
            except P.PacketError as exc:
                self.counters["dropped_malformed"] += 1
                self.log.debug("malformed from %s: %s", source, exc)
                continue
            if pkt.chaddr == PROBE_MAC:
                self.counters["ignored_own_probe"] += 1      # our own rogue-server probe
                continue
            arrival = Arrival(pkt, port, source)
            try:
                decision = self.policy.decide(arrival, now)
            except Exception:
                self.counters["policy_errors"] += 1
                self.log.exception("policy failed on a packet from %s", source)
                continue
            self.counters[decision.reason] += 1
            decisions.append((decision, sock, arrival))
        if decisions:
            self._commit_and_send(decisions)

    def _commit_and_send(self, decisions: list[tuple[Decision, socket.socket, Arrival]]) -> None:
        enrolled = False
        waiting = []
        for decision, sock, arrival in decisions:
            if decision.enrol is not None:
                enrolled |= self._enrol(decision)
            if decision.binding is not None:
                waiting.append((decision, sock))
            elif decision.probe is not None and self.pinger is not None:
                task = asyncio.get_running_loop().create_task(self._ping_then_offer(decision, sock, arrival))
                self._pinging.add(task)
                task.add_done_callback(self._pinging.discard)
            elif decision.reply is not None:
                self._send(decision, sock)          # OFFERs, NAKs: nothing to store first
        if enrolled:
            self.hosts.invalidate()
            self.ctx.changed("hosts")
        if not waiting:
            return
        if self.writer is not None:
            self.writer.submit([d.binding for d, _ in waiting],
                               lambda ok, waiting=waiting: self._committed(ok, waiting))
            return
        for decision, _ in waiting:                  # no writer thread: commit inline
            self.journal.add(decision.binding)
        try:
            self.journal.flush()
            ok = True
        except Exception:
            self.journal.pending.clear()
            self.log.exception("could not store leases; holding back their ACKs")
            ok = False
        self._committed(ok, waiting)

    def _committed(self, ok: bool, waiting: list[tuple[Decision, socket.socket]]) -> None:
        """The leases are durable (or failed to be): now, and only now, answer."""
        if not ok:
            self.counters["store_failed"] += len(waiting)
            return
        self._notify("leases")
        for decision, sock in waiting:
            if decision.reply is not None:
                self._send(decision, sock)
                self._announce(decision)

    def _announce(self, decision: Decision) -> None:
        """One log line and event per lease of a known host, and per PXE boot (renewals repeat
        neither: a key changes only when the address or the boot file does)."""
        b = decision.binding
        host = self.hosts.host_by_mac(b.mac)
        if host is None or b.state != "bound":
            return              # unknown machines (a flood of them) cost one dict lookup each
        file = decision.reply.file.decode("ascii", "replace") if decision.reply.file else ""
        key = (str(b.ip), file)
        if self._announced.get(b.mac) == key:
            return
        self._announced[b.mac] = key
        if file:
            row = bootloaders.by_file(file)
            loader = f"{row.firmware} loader {row.file}" if row else \
                "iPXE, sent its script" if file.endswith(".ipxe") else file
            detail = f"PXE boot: {loader}, address {b.ip}"
            kind = "pxe"
        else:
            detail, kind = f"lease {b.ip} to {b.mac}", "lease"
        self.log.info("%s: %s", host.hostname, detail)
        try:
            self.ctx.store.event("dhcp", kind, detail, host=host.hostname)
        except Exception:
            self.log.exception("could not record the event")

    async def _ping_then_offer(self, decision: Decision, sock: socket.socket, arrival: Arrival) -> None:
        """Offer a new address only once it did not answer a ping; one that answers is set aside."""
        for _ in range(PING_TRIES):
            if decision.probe is None or not await self.pinger.answers(decision.probe, self.cfg.dhcp.ping_timeout):
                break
            self.counters["ping_conflicts"] += 1
            self.log.warning("%s answers a ping but has no lease: set aside, offering another", decision.probe)
            decision = self.policy.in_use(arrival, decision.probe, time.time())
        else:
            self.counters["ping_conflicts_gave_up"] += 1   # the client's next DISCOVER tries again
            return
        if decision.reply is not None:
            self._send(decision, sock)

    def _enrol(self, decision: Decision) -> bool:
        """Record an unknown MAC (dhcp.enrol), or the MAC of the waiting host it became (dhcp.in_order)."""
        host = decision.enrol
        try:
            existing = self.ctx.store.host(host.hostname)
            if self.ctx.store.host_by_mac(host.mac) is None and (existing is None or not existing.mac):
                self.ctx.store.upsert_host(host)
                self.counters["enrolled"] += 1
                if existing is not None:
                    self.log.info("%s: is %s from now on, the next machine to boot (dhcp.in_order)",
                                  host.hostname, host.mac)
                    self.ctx.store.event("dhcp", "claimed", f"{host.mac} booted next: it is {host.hostname}",
                                         host=host.hostname)
                return True
        except Exception:
            self.log.exception("could not enrol %s", decision.enrol.mac)
        return False

    def _send(self, decision: Decision, sock: socket.socket) -> None:
        try:
            wire = P.encode(decision.reply, decision.max_size)
        except P.PacketError as exc:
            self.counters["encode_errors"] += 1
            self.log.error("cannot encode reply: %s", exc)
            return
        try:
            sock.sendto(wire, decision.dest)
            self.counters["sent"] += 1
        except OSError as exc:
            self.counters["send_errors"] += 1
            if exc.errno not in (errno.EAGAIN, errno.ENETUNREACH, errno.EHOSTUNREACH):
                self.log.warning("send to %s: %s", decision.dest, exc)

    def _notify(self, topic: str) -> None:
        if self._notify_pending:
            return
        self._notify_pending = True

        def fire() -> None:
            self._notify_pending = False
            self.ctx.changed(topic)
        asyncio.get_running_loop().call_later(NOTIFY_SECONDS, fire)

    # --- status ----------------------------------------------------------------
    def health(self) -> Health:
        counters = {k: self.counters.get(k, 0) for k in
                    ("received", "offered", "acked", "naked", "dropped_malformed", "pool_exhausted")}
        counters.update(self.counters)
        counters["lease_commits"] = self.journal.commits + (self.writer.commits if self.writer else 0)
        detail = self.alarm or f"{self.cfg.dhcp.mode} mode, {len(self.book.by_mac)} bindings"
        return Health(ok=not self.alarm, detail=detail, counters=counters)

    def endpoints(self) -> list[Endpoint]:
        ports = [self.cfg.dhcp.port] + ([PROXY_PORT] if self.cfg.dhcp.mode == "proxy" else [])
        what = "proxyDHCP (PXE only)" if self.cfg.dhcp.mode == "proxy" else "DHCP, PXE boot files"
        return [Endpoint("udp", f"{self.cfg.interface}", port, what) for port in ports]

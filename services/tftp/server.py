"""TFTP over asyncio UDP: the listening socket, one ephemeral socket per session.

Read-only: every WRQ gets ERROR 2 and nothing is ever opened for writing.
Requests arrive on the well-known port; each accepted read gets its own socket
(a new TID, RFC 1350) that the event loop watches directly, so a datagram goes
straight to its session: no lookup over all sessions. Datagrams on a session
socket from any other address get ERROR 5 while the transfer goes on.

The hot path avoids asyncio transports: add_reader on the raw socket, drain
with recvfrom_into into one shared buffer, and the engine builds DATA packets
into its own buffer filled by os.preadv.

`TftpServer(root, address, port)` works without the appliance (tests, bench);
`TftpService` is the appliance service reading cfg.tftp and cfg.boot_root.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
from pathlib import Path
from typing import Callable

from appliance.service import Endpoint, Health, Service
from services import safepath

from .engine import BytesSource, FileSource, Limits, ReadTransfer, to_netascii
from .packet import (ERR_ACCESS, ERR_ILLEGAL_OP, ERR_NOT_FOUND, ERR_UNDEFINED, ERR_UNKNOWN_TID,
                     RRQ, WRQ, PacketError, Request, decode, encode_error)

log = logging.getLogger("si.tftp")

MAX_NETASCII = 16 * 1024 * 1024     # netascii is converted in memory: configs, not kernels
SOCKET_BUFFER = 1 << 20
RECV_SIZE = 65536

Dynamic = Callable[[str, str], "bytes | None"]

COUNTERS = (
    "datagrams", "malformed", "not_a_request", "requests", "write_refused", "bad_mode",
    "path_refused", "not_found", "dynamic_served", "dynamic_failed", "duplicate_requests",
    "busy_refused", "sessions_started", "sessions_complete", "sessions_failed", "sessions_timeout",
    "client_errors", "unknown_tid", "data_sent", "retransmits", "dup_acks", "stray_packets",
    "bytes_sent",
)


class Session:
    """Glue between one session socket, the event loop and one ReadTransfer."""

    __slots__ = ("server", "sock", "peer", "transfer", "fd", "timer", "timer_at", "loop", "request")

    def __init__(self, server: "TftpServer", sock: socket.socket, peer: tuple, fd: int | None,
                 request: bytes = b"") -> None:
        self.server = server
        self.request = request
        self.sock = sock
        self.peer = peer
        self.fd = fd
        self.transfer: ReadTransfer | None = None
        self.loop = server.loop
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = float("inf")

    def begin(self, transfer: ReadTransfer) -> None:
        self.transfer = transfer
        self.loop.add_reader(self.sock.fileno(), self.on_readable)
        transfer.start()
        if transfer.done:
            self.close()
        else:
            self._arm(transfer.deadline)

    def send(self, data) -> None:
        try:
            self.sock.sendto(data, self.peer)
        except (BlockingIOError, InterruptedError):
            pass                      # socket buffer full: the retransmit timer covers it
        except OSError as exc:
            log.debug("send to %s failed: %s", self.peer, exc)

    def on_readable(self) -> None:
        transfer = self.transfer
        server = self.server
        buf, view = server._rbuf, server._rview
        peer = self.peer
        now = self.loop.time()
        recv = self.sock.recvfrom_into
        while True:
            try:
                n, addr = recv(buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if addr != peer:
                server.counters["unknown_tid"] += 1
                try:
                    self.sock.sendto(encode_error(ERR_UNKNOWN_TID, "unknown transfer id"), addr)
                except OSError:
                    pass
                continue
            transfer.handle(view[:n], now)
            if transfer.done:
                self.close()
                return
        if transfer.deadline < self.timer_at:
            self._arm(transfer.deadline)

    def _arm(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = when
        self.timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        self.timer_at = float("inf")
        transfer = self.transfer
        transfer.on_timer(self.loop.time())
        if transfer.done:
            self.close()
        else:
            self._arm(transfer.deadline)

    def close(self) -> None:
        server = self.server
        if server.sessions.pop(self.peer, None) is None:
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        try:
            self.loop.remove_reader(self.sock.fileno())
        except (ValueError, OSError):
            pass
        self.sock.close()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        t = self.transfer
        if t is not None:
            c = server.counters
            c["data_sent"] += t.data_sent
            c["retransmits"] += t.retransmits
            c["dup_acks"] += t.dup_acks
            c["stray_packets"] += t.stray
            c["bytes_sent"] += t.bytes_sent
            if t.outcome == "complete":
                c["sessions_complete"] += 1
            elif t.outcome == "timeout":
                c["sessions_timeout"] += 1
            elif t.outcome.startswith("client error"):
                c["client_errors"] += 1
            else:
                c["sessions_failed"] += 1
            if server.on_session_end:
                server.on_session_end(self.peer, t)


class TftpServer:
    """A read-only TFTP server for one root; usable without the appliance."""

    def __init__(self, root: Path | str, address: str = "127.0.0.1", port: int = 69, *,
                 extra_addresses: tuple[str, ...] = (), max_sessions: int = 512,
                 dynamic: Dynamic | None = None, limits: Limits = Limits()) -> None:
        self.root = Path(root)
        self.addresses = (address, *extra_addresses)
        self.port = port
        self.max_sessions = max_sessions
        self.dynamic = dynamic
        self.limits = limits
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.sessions: dict[tuple, Session] = {}
        self.listeners: list[socket.socket] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.on_session_end: Callable[[tuple, ReadTransfer], None] | None = None
        self._rbuf = bytearray(RECV_SIZE)
        self._rview = memoryview(self._rbuf)

    # --- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        try:
            for address in self.addresses:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setblocking(False)
                sock.bind((address, self.port))
                if self.port == 0:            # tests: take the kernel's port for the others too
                    self.port = sock.getsockname()[1]
                self.listeners.append(sock)
                self.loop.add_reader(sock.fileno(), self._on_request_readable, sock)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for session in list(self.sessions.values()):
            session.close()
        for sock in self.listeners:
            try:
                self.loop.remove_reader(sock.fileno())
            except (ValueError, OSError, AttributeError):
                pass
            sock.close()
        self.listeners = []

    async def __aenter__(self) -> "TftpServer":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()

    # --- requests on the well-known port ---------------------------------------
    def _on_request_readable(self, sock: socket.socket) -> None:
        for _ in range(64):          # bounded, so a flood cannot starve the sessions
            try:
                data, addr = sock.recvfrom(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.counters["datagrams"] += 1
            try:
                self._request(sock, data, addr)
            except Exception:        # one bad request must never stop the server
                log.exception("request from %s failed", addr)
                self.counters["sessions_failed"] += 1

    def _refuse(self, sock: socket.socket, addr: tuple, code: int, message: str, counter: str) -> None:
        self.counters[counter] += 1
        log.info("refused %s: %s", addr[0], message)
        try:
            sock.sendto(encode_error(code, message), addr)
        except OSError:
            pass

    def _request(self, sock: socket.socket, data: bytes, addr: tuple) -> None:
        try:
            packet = decode(data)
        except PacketError as exc:
            self.counters["malformed"] += 1
            log.debug("malformed datagram from %s: %s", addr, exc)
            return
        if not isinstance(packet, Request):
            self.counters["not_a_request"] += 1      # DATA/ACK/OACK/ERROR to the server port
            return
        self.counters["requests"] += 1
        if packet.opcode == WRQ:
            self._refuse(sock, addr, ERR_ACCESS, "read-only server", "write_refused")
            return
        if packet.mode not in ("octet", "netascii"):
            self._refuse(sock, addr, ERR_ILLEGAL_OP, f"mode {packet.mode[:20]!r} not supported", "bad_mode")
            return
        old = self.sessions.get(addr)
        if old is not None:
            old.on_readable()                  # take in what it has queued, often its final ACK
            old = self.sessions.get(addr)
        if old is not None:
            if old.request == data and old.transfer.base == 1:
                self.counters["duplicate_requests"] += 1   # a retransmitted RRQ: the session answers
                return
            # The client moved on from this port (PXE ROMs reuse it): the old transfer is over.
            old.transfer.abort("superseded by a new request")
            old.close()
        if len(self.sessions) >= self.max_sessions:
            self._refuse(sock, addr, ERR_UNDEFINED, "server busy", "busy_refused")
            return
        try:
            name = safepath.clean(packet.filename)
        except safepath.UnsafePath:
            self._refuse(sock, addr, ERR_ACCESS, "access violation", "path_refused")
            return
        fd = None
        source = None
        if self.dynamic is not None:
            try:
                rendered = self.dynamic(name, addr[0])
            except Exception:
                log.exception("dynamic file %s for %s failed", name, addr[0])
                self._refuse(sock, addr, ERR_UNDEFINED, "could not render file", "dynamic_failed")
                return
            if rendered is not None:
                self.counters["dynamic_served"] += 1
                source = BytesSource(bytes(rendered))
        if source is None:
            try:
                fd, size = safepath.open_file(self.root, name)
            except safepath.NotFound:
                self._refuse(sock, addr, ERR_NOT_FOUND, "file not found", "not_found")
                return
            except safepath.UnsafePath:
                self._refuse(sock, addr, ERR_ACCESS, "access violation", "path_refused")
                return
            source = FileSource(fd, size)
        if packet.mode == "netascii":
            try:
                if source.size > MAX_NETASCII:
                    self._refuse(sock, addr, ERR_UNDEFINED, "file too large for netascii", "bad_mode")
                    return
                raw = bytearray(source.size)
                got = source.read_into(memoryview(raw), 0)
                source = BytesSource(to_netascii(bytes(raw[:got])))
            finally:
                if fd is not None:
                    os.close(fd)
                    fd = None
        self._start_session(sock, addr, packet, source, fd, data)

    def _start_session(self, listener: socket.socket, addr: tuple, request: Request,
                       source, fd: int | None, raw: bytes = b"") -> None:
        local = listener.getsockname()[0]
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            sock.bind((local, 0))
        except OSError:
            sock.close()
            if fd is not None:
                os.close(fd)
            raise
        session = Session(self, sock, addr, fd, raw)
        self.sessions[addr] = session
        self.counters["sessions_started"] += 1
        transfer = ReadTransfer(source, session.send, request.options, self.loop.time(), self.limits)
        session.begin(transfer)

    # --- status ----------------------------------------------------------------
    def health(self) -> Health:
        counters = dict(self.counters)
        counters["sessions_active"] = len(self.sessions)
        return Health(ok=bool(self.listeners), detail="" if self.listeners else "not listening",
                      counters=counters)


class TftpService(Service):
    name = "tftp"

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.server: TftpServer | None = None

    def _build(self) -> TftpServer:
        cfg = self.ctx.config
        return TftpServer(cfg.boot_root, str(cfg.address), cfg.tftp.port,
                          max_sessions=cfg.tftp.max_sessions, dynamic=self.ctx.dynamic_file)

    async def serve(self, ready: Callable[[], None]) -> None:
        self.server = self._build()
        await self.server.start()
        ready()
        try:
            await asyncio.Event().wait()
        finally:
            self.server.close()

    def health(self) -> Health:
        if self.server is None:
            return Health(False, "not started")
        return self.server.health()

    def endpoints(self) -> list[Endpoint]:
        cfg = self.ctx.config
        return [Endpoint("udp", str(cfg.address), cfg.tftp.port, "pxelinux, iPXE, kernel/initrd")]


def main(argv: list[str] | None = None) -> None:
    """Standalone server for benchmarks and manual tests: python -m services.tftp.server ROOT."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("root")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=69)
    parser.add_argument("--max-sessions", type=int, default=512)
    args = parser.parse_args(argv)

    async def run() -> None:
        server = TftpServer(args.root, args.address, args.port, max_sessions=args.max_sessions)
        await server.start()
        print(f"listening on {args.address}:{server.port}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            server.close()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

"""TFTP over asyncio UDP: the listening socket, one ephemeral socket per session.

Read-only: every WRQ gets ERROR 2 and nothing is ever opened for writing.
Requests arrive on the well-known port; each accepted read gets its own socket
(a new TID, RFC 1350) registered with the data plane's epoll, so a datagram
goes straight to its session: no scan of all sessions. Datagrams on a session
socket from any other address get ERROR 5 while the transfer goes on.

Requests, path resolution and dynamic files run on the asyncio loop; the
transfers run on a bare epoll loop (plane.py, see DataPlane for why). Files
from the boot root go to worker processes (pool.py), one per core, so
many lock-step clients get more than one core; rendered files and netascii
conversions, small and in memory, stay on a data-plane thread of this process.

`TftpServer(root, address, port)` works without the appliance (tests, bench);
`TftpService` is the appliance service reading cfg.tftp and cfg.boot_root.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Callable

from services.contract import Endpoint, Health, Service
from services import safepath

from . import native
from .engine import BytesSource, FileSource, Limits, ReadTransfer, to_netascii
from .packet import ERR_ACCESS, ERR_ILLEGAL_OP, ERR_NOT_FOUND, ERR_UNDEFINED, WRQ, PacketError, Request, decode, \
    encode_error
from .plane import PLANE_COUNTERS, RECV_SIZE, DataPlane, Session, raise_fd_limit
from .pool import RemoteSession, WorkerPool, default_workers

log = logging.getLogger("si.tftp")

MAX_NETASCII = 16 * 1024 * 1024     # netascii is converted in memory: configs, not kernels
SOCKET_BUFFER = 1 << 20

Dynamic = Callable[[str, str], "bytes | None"]

COUNTERS = (    # kept by the asyncio side
    "datagrams", "malformed", "not_a_request", "requests", "write_refused", "bad_mode",
    "path_refused", "not_found", "dynamic_served", "dynamic_failed", "duplicate_requests",
    "busy_refused", "sessions_started", "superseded", "handed_to_workers",
)


class TftpServer:
    """A read-only TFTP server for one root; usable without the appliance."""

    def __init__(self, root: Path | str, address: str = "127.0.0.1", port: int = 69, *,
                 extra_addresses: tuple[str, ...] = (), max_sessions: int = 512,
                 dynamic: Dynamic | None = None, limits: Limits = Limits(), workers: int | None = None) -> None:
        self.root = Path(root)
        self.addresses = (address, *extra_addresses)
        self.port = port
        self.max_sessions = max_sessions
        self.dynamic = dynamic
        self.limits = limits
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        # By peer; the data-plane thread removes its own, under the lock.
        self.sessions: dict[tuple, Session | RemoteSession] = {}
        self.sessions_lock = threading.Lock()
        self.listeners: list[socket.socket] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.plane: DataPlane | None = None
        self.workers = default_workers() if workers is None else workers   # 0: all in this process
        self.pool: WorkerPool | None = None

    # --- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        raise_fd_limit()
        self.plane = DataPlane()
        self.plane.start()
        try:
            if self.workers:
                self.pool = WorkerPool(self.workers, self.limits, self._remote_ended)
                compiled, why_not = native.available()
                if not compiled:
                    log.warning("transfer processes run the lock-step loop in Python: %s", why_not)
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
        if self.pool is not None:
            self.pool.close()             # each worker ends its sessions and exits
            self.pool = None
        if self.plane is not None:
            self.plane.stop()             # aborts and closes every session on its own thread
            self.plane = None
        self.sessions.clear()
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
                self.counters["malformed"] += 1

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
            if old.request == data and not old.moving:
                self.counters["duplicate_requests"] += 1   # a retransmitted RRQ: the session answers
                return
            # The client moved on from this port (PXE ROMs reuse it, often right after the
            # final ACK): the old transfer is over either way.
            self.counters["superseded"] += 1
            with self.sessions_lock:
                self.sessions.pop(addr, None)
            if isinstance(old, RemoteSession):
                old.abort("superseded by a new request")
            else:
                self.plane.submit(lambda: old.abort("superseded by a new request"))
        if len(self.sessions) >= self.max_sessions:
            self._refuse(sock, addr, ERR_UNDEFINED, "server busy", "busy_refused")
            return
        log.debug("RRQ %s:%s %r mode %s options %s", addr[0], addr[1], packet.filename, packet.mode,
                  packet.options)
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
        if fd is not None and self.pool is not None and self.pool.usable:
            try:
                remote = self.pool.hand_over(sock, fd, source.size, addr, raw, request.options)
            except OSError as exc:
                log.warning("could not hand %s to a worker (%s): sending it from here", addr[0], exc)
            else:
                sock.close()          # the worker has its own copies now
                os.close(fd)
                with self.sessions_lock:
                    self.sessions[addr] = remote
                self.counters["sessions_started"] += 1
                self.counters["handed_to_workers"] += 1
                self._spin_if_alone()
                return
        session = Session(self.plane, sock, addr, fd, raw, on_close=self._local_ended)
        session.transfer = ReadTransfer(source, session.send, request.options, time.monotonic(), self.limits)
        session.enable_trains()
        with self.sessions_lock:
            self.sessions[addr] = session
        self.counters["sessions_started"] += 1
        self.plane.submit(session.begin)
        self._spin_if_alone()

    def _spin_if_alone(self) -> None:
        """On the asyncio loop: a plane may spin only while one transfer runs in all.

        Without workers the one plane sees every session and decides alone.
        """
        if self.pool is not None:
            alone = len(self.sessions) == 1
            self.plane.may_spin = alone
            self.pool.allow_spin(alone)

    def _local_ended(self, session: Session) -> None:
        """On the data-plane thread: the session is over."""
        with self.sessions_lock:
            if self.sessions.get(session.peer) is session:
                del self.sessions[session.peer]
        if self.pool is not None and self.loop is not None:
            try:
                self.loop.call_soon_threadsafe(self._spin_if_alone)
            except RuntimeError:
                pass                  # the loop is closing: nothing left to tell

    def _remote_ended(self, session: RemoteSession, report: dict) -> None:
        """On the asyncio loop: a worker reported the end of a transfer (or died)."""
        with self.sessions_lock:
            if self.sessions.get(session.peer) is session:
                del self.sessions[session.peer]
        self._spin_if_alone()
        outcome = report.get("outcome", "")
        if outcome == "worker died":
            log.warning("transfer to %s:%s lost with its worker", *session.peer)
        else:   # the same line as an in-process session's (plane.Session.close)
            log.debug("done %s:%s %s, %d bytes in %d blocks", session.peer[0], session.peer[1], outcome,
                      report.get("bytes", 0), report.get("blocks", 0))

    # --- status ----------------------------------------------------------------
    def health(self) -> Health:
        counters = dict(self.counters, **dict.fromkeys(PLANE_COUNTERS, 0))
        planes = [self.plane.counters] if self.plane else []
        if self.pool:
            planes.append(self.pool.counters())
        for plane in planes:
            for key, value in plane.items():
                counters[key] += value
        counters["sessions_active"] = len(self.sessions)
        detail = "" if self.listeners else "not listening"
        compiled, why_not = native.available()
        if self.listeners and self.pool is not None and not compiled:
            detail = f"lock-step loop in Python: {why_not}"
        return Health(ok=bool(self.listeners), detail=detail, counters=counters)


class TftpService(Service):
    name = "tftp"

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.server: TftpServer | None = None

    def _build(self) -> TftpServer:
        cfg = self.ctx.config
        return TftpServer(cfg.boot_root, str(cfg.address), cfg.tftp.port,
                          max_sessions=cfg.tftp.max_sessions, dynamic=self.ctx.dynamic_file,
                          workers=cfg.tftp.workers)

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
    parser.add_argument("--workers", type=int, default=None,
                        help="transfer processes (default: one per core, at most 4; 0: none)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")

    async def run() -> None:
        server = TftpServer(args.root, args.address, args.port, max_sessions=args.max_sessions,
                            workers=args.workers)
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

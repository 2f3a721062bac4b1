"""TFTP over asyncio UDP: the listening socket, one ephemeral socket per session.

Read-only: every WRQ gets ERROR 2 and nothing is ever opened for writing.
Requests arrive on the well-known port; each accepted read gets its own socket
(a new TID, RFC 1350) registered with the data plane's epoll, so a datagram
goes straight to its session: no scan of all sessions. Datagrams on a session
socket from any other address get ERROR 5 while the transfer goes on.

Requests, path resolution and dynamic files run on the asyncio loop; the
transfers run on one data-plane thread with a bare epoll loop (see DataPlane
for why): drain with recvfrom_into into one buffer, the engine builds DATA
packets into its own buffer filled by os.preadv, sendto straight from it.

`TftpServer(root, address, port)` works without the appliance (tests, bench);
`TftpService` is the appliance service reading cfg.tftp and cfg.boot_root.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import heapq
import logging
import os
import select
import socket
import threading
import time
from pathlib import Path
from typing import Callable

from appliance.service import Endpoint, Health, Service
from services import safepath

from .engine import BytesSource, FileSource, Limits, ReadTransfer, to_netascii
from .packet import (ERR_ACCESS, ERR_ILLEGAL_OP, ERR_NOT_FOUND, ERR_UNDEFINED, ERR_UNKNOWN_TID,
                     WRQ, PacketError, Request, decode, encode_error)

log = logging.getLogger("si.tftp")

MAX_NETASCII = 16 * 1024 * 1024     # netascii is converted in memory: configs, not kernels
SOCKET_BUFFER = 1 << 20
RECV_SIZE = 65536
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)   # Linux 4.18+: UDP generic segmentation offload
GSO_MAX_SEGMENTS = 64                              # the kernel's UDP_MAX_SEGMENTS
GSO_MAX_BYTES = 65000                              # one send stays one IP-sized buffer
SPIN_SECONDS = 200e-6                               # see Session.on_readable
SPIN_SLICE = 2e-3

Dynamic = Callable[[str, str], "bytes | None"]

COUNTERS = (    # kept by the asyncio side
    "datagrams", "malformed", "not_a_request", "requests", "write_refused", "bad_mode",
    "path_refused", "not_found", "dynamic_served", "dynamic_failed", "duplicate_requests",
    "busy_refused", "sessions_started", "superseded",
)
PLANE_COUNTERS = (   # kept by the data-plane thread
    "sessions_complete", "sessions_failed", "sessions_timeout", "client_errors", "unknown_tid",
    "data_sent", "retransmits", "dup_acks", "stray_packets", "bytes_sent", "gso_trains",
)


class Session:
    """One transfer's socket and engine; lives on the data-plane thread once begun."""

    __slots__ = ("plane", "sock", "fd_no", "peer", "transfer", "fd", "timer_at", "request", "closed",
                 "owner")

    def __init__(self, owner: "TftpServer", sock: socket.socket, peer: tuple, fd: int | None,
                 request: bytes = b"") -> None:
        self.owner = owner
        self.plane = owner.plane
        self.sock = sock
        self.fd_no = sock.fileno()
        self.peer = peer
        self.fd = fd
        self.request = request
        self.transfer: ReadTransfer | None = None
        self.timer_at = float("inf")
        self.closed = False

    def send(self, data) -> None:
        try:
            self.sock.sendto(data, self.peer)
        except (BlockingIOError, InterruptedError):
            pass                      # socket buffer full: the retransmit timer covers it
        except OSError as exc:
            log.debug("send to %s failed: %s", self.peer, exc)

    def send_train(self, view: memoryview, slot: int) -> bool:
        """A window's packets, laid end to end, in as few sendto calls as UDP GSO allows.

        The socket has UDP_SEGMENT = slot, so the kernel cuts each send into
        datagrams of `slot` bytes: a window of 16 costs one syscall, not 16.
        False when the kernel refuses (a segment over the path MTU, no GSO).
        """
        step = slot * min(GSO_MAX_SEGMENTS, GSO_MAX_BYTES // slot)
        try:
            for start in range(0, len(view), step):
                self.sock.sendto(view[start:start + step], self.peer)
        except (BlockingIOError, InterruptedError):
            pass                      # socket buffer full: the retransmit timer covers it
        except OSError as exc:
            log.debug("GSO send to %s refused (%s): one datagram at a time", self.peer, exc)
            return False
        return True

    def enable_trains(self) -> None:
        """Let the transfer send windows as GSO trains when the window and kernel allow."""
        transfer = self.transfer
        slot = 4 + transfer.blksize
        if transfer.window < 2 or GSO_MAX_BYTES // slot < 2:
            return
        try:
            self.sock.setsockopt(socket.SOL_UDP, UDP_SEGMENT, slot)
        except OSError:
            return
        transfer.send_train = self.send_train

    # --- called on the data-plane thread only ----------------------------------------
    def begin(self) -> None:
        plane = self.plane
        plane.sessions[self.fd_no] = self
        plane.epoll.register(self.fd_no, select.EPOLLIN)
        transfer = self.transfer
        transfer.start()
        if transfer.done:
            self.close()
        else:
            self.arm(transfer.deadline)

    def on_readable(self, now: float) -> None:
        transfer = self.transfer
        plane = self.plane
        buf, view = plane.rbuf, plane.rview
        peer = self.peer
        recv = self.sock.recvfrom_into
        lockstep = transfer.window == 1
        # With no other session to serve, wait for the next ACK spinning up to
        # SPIN_SECONDS rather than in epoll: a client usually answers within that,
        # and on an idle machine the sleep and wake-up it spares cost more than a
        # block (measured: window 1, 25 MB/s spinning against 11 for tftpd-hpa,
        # which sleeps). Back to epoll at least every SPIN_SLICE, for new sessions
        # and timers.
        spin = SPIN_SECONDS if len(plane.sessions) == 1 else 0.0
        spin_until, slice_end = now + spin, now + SPIN_SLICE
        clock = time.monotonic
        while True:                   # drain: on a fast link ACKs queue while we send
            try:
                n, addr = recv(buf)
            except OSError:           # EAGAIN: drained (or an ICMP error: the timer decides)
                if spin and clock() < spin_until:
                    continue
                break
            if addr != peer:
                plane.counters["unknown_tid"] += 1
                try:
                    self.sock.sendto(encode_error(ERR_UNKNOWN_TID, "unknown transfer id"), addr)
                except OSError:
                    pass
                continue
            if n == 4 and buf[1] == 4 and buf[0] == 0:     # an ACK: skip the general decoder
                transfer.ack((buf[2] << 8) | buf[3], now)
            else:
                transfer.handle(view[:n], now)
            if transfer.done:
                self.close()
                return
            if spin:
                now = clock()
                if now >= slice_end:
                    break
                spin_until = now + spin
            elif lockstep:
                # Other sessions wait: no recvfrom that can only fail (the next ACK
                # cannot come before the block just sent); epoll is level-triggered
                # and reports anything still queued.
                break
        if transfer.deadline < self.timer_at:
            self.arm(transfer.deadline)

    def arm(self, when: float) -> None:
        self.timer_at = when
        heapq.heappush(self.plane.timers, (when, id(self), self))

    def on_timer(self, now: float) -> None:
        self.timer_at = float("inf")
        transfer = self.transfer
        transfer.on_timer(now)
        if transfer.done:
            self.close()
        else:
            self.arm(transfer.deadline)

    def abort(self, outcome: str) -> None:
        if not self.closed:
            self.transfer.abort(outcome)
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        plane = self.plane
        if plane.sessions.pop(self.fd_no, None) is not None:
            try:
                plane.epoll.unregister(self.fd_no)
            except OSError:
                pass
        owner = self.owner
        with owner.sessions_lock:
            if owner.sessions.get(self.peer) is self:
                del owner.sessions[self.peer]
        self.sock.close()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        t = self.transfer
        c = plane.counters
        c["data_sent"] += t.data_sent
        c["retransmits"] += t.retransmits
        c["dup_acks"] += t.dup_acks
        c["stray_packets"] += t.stray
        c["bytes_sent"] += t.bytes_sent
        c["gso_trains"] += t.trains
        if t.outcome == "complete":
            c["sessions_complete"] += 1
        elif t.outcome == "timeout":
            c["sessions_timeout"] += 1
        elif t.outcome.startswith("client error"):
            c["client_errors"] += 1
        else:
            c["sessions_failed"] += 1
        log.debug("done %s:%s %s, %d bytes in %d blocks", self.peer[0], self.peer[1], t.outcome,
                  t.bytes_sent, t.data_sent)
        if self.owner.on_session_end:
            self.owner.on_session_end(self.peer, t)


class DataPlane(threading.Thread):
    """Every session socket on one bare epoll loop in its own thread.

    Measured here: one asyncio loop iteration costs more Python time than the
    whole packet (ACK in, pread, DATA out), and a window-1 transfer needs one
    iteration per block. This loop does the same with a dict lookup per event
    and a lazy timer heap (one entry per armed deadline; an ACK only moves a
    float). Requests, file resolution and dynamic files stay on asyncio; a
    session is handed over with submit(). The counters here belong to this
    thread; the server adds them up for health().
    """

    def __init__(self) -> None:
        super().__init__(name="tftp-data", daemon=True)
        self.epoll = select.epoll()
        self.sessions: dict[int, Session] = {}
        self.timers: list[tuple[float, int, Session]] = []
        self.inbox: collections.deque[Callable[[], None]] = collections.deque()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.epoll.register(self.wake_r, select.EPOLLIN)
        self.counters: dict[str, int] = dict.fromkeys(PLANE_COUNTERS, 0)
        self.rbuf = bytearray(RECV_SIZE)
        self.rview = memoryview(self.rbuf)
        self.running = True

    def submit(self, job: Callable[[], None]) -> None:
        self.inbox.append(job)
        try:
            os.write(self.wake_w, b"\0")
        except BlockingIOError:
            pass                      # already awake with a full pipe

    def stop(self) -> None:
        self.running = False
        self.submit(lambda: None)
        if self.is_alive():
            self.join(10)
        os.close(self.wake_r)
        os.close(self.wake_w)
        self.epoll.close()

    def _run_inbox(self) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while self.inbox:
            job = self.inbox.popleft()
            try:
                job()
            except Exception:
                log.exception("data plane job failed")

    def run(self) -> None:
        poll = self.epoll.poll
        sessions = self.sessions
        timers = self.timers
        clock = time.monotonic
        wake = self.wake_r
        while self.running:
            timeout = max(0.0, timers[0][0] - clock()) if timers else -1
            try:
                events = poll(timeout)
            except InterruptedError:
                continue
            now = clock()
            for fd, _ in events:
                session = sessions.get(fd)
                if session is not None:
                    try:
                        session.on_readable(now)
                    except Exception:     # one broken session must not stop the others
                        log.exception("session %s failed", session.peer)
                        session.abort("internal error")
                elif fd == wake:
                    self._run_inbox()
            while timers and timers[0][0] <= now:
                when, _, session = heapq.heappop(timers)
                if session.timer_at == when and not session.closed:
                    try:
                        session.on_timer(now)
                    except Exception:
                        log.exception("session %s timer failed", session.peer)
                        session.abort("internal error")
        self._run_inbox()
        for session in list(sessions.values()):
            session.abort("server stopped")


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
        self.sessions: dict[tuple, Session] = {}      # by peer; both threads change it, under the lock
        self.sessions_lock = threading.Lock()
        self.listeners: list[socket.socket] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.on_session_end: Callable[[tuple, ReadTransfer], None] | None = None
        self.plane: DataPlane | None = None

    # --- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.plane = DataPlane()
        self.plane.start()
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
            if old.request == data and old.transfer.base == 1:
                self.counters["duplicate_requests"] += 1   # a retransmitted RRQ: the session answers
                return
            # The client moved on from this port (PXE ROMs reuse it, often right after the
            # final ACK): the old transfer is over either way.
            self.counters["superseded"] += 1
            with self.sessions_lock:
                self.sessions.pop(addr, None)
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
        session = Session(self, sock, addr, fd, raw)
        session.transfer = ReadTransfer(source, session.send, request.options, time.monotonic(), self.limits)
        session.enable_trains()
        with self.sessions_lock:
            self.sessions[addr] = session
        self.counters["sessions_started"] += 1
        self.plane.submit(session.begin)

    # --- status ----------------------------------------------------------------
    def health(self) -> Health:
        counters = dict(self.counters)
        if self.plane is not None:
            counters.update(self.plane.counters)
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
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")

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

"""The data plane: session sockets on one bare epoll loop, and the sessions on it.

Requests, path resolution and dynamic files run elsewhere (the asyncio side of
TftpServer); a session arrives here ready to send, and from then on only this
loop touches it: drain with recvfrom_into into one buffer, the engine builds
DATA packets into its own buffer filled by os.preadv, sendto straight from it.
The same loop runs in a thread of the appliance and in each worker process
(worker.py).
"""
from __future__ import annotations

import collections
import heapq
import logging
import os
import resource
import select
import socket
import threading
import time
from typing import Callable

from .engine import ReadTransfer
from .packet import ERR_UNKNOWN_TID, encode_error

log = logging.getLogger("si.tftp")

RECV_SIZE = 65536
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)   # Linux 4.18+: UDP generic segmentation offload
GSO_MAX_SEGMENTS = 64                              # the kernel's UDP_MAX_SEGMENTS
GSO_MAX_BYTES = 65000                              # one send stays one IP-sized buffer
SPIN_SECONDS = 200e-6                               # see Session.on_readable
SPIN_SLICE = 2e-3
UNKNOWN_TID = encode_error(ERR_UNKNOWN_TID, "unknown transfer id")

PLANE_COUNTERS = (   # kept by each data plane
    "sessions_complete", "sessions_failed", "sessions_timeout", "client_errors", "unknown_tid",
    "data_sent", "retransmits", "dup_acks", "stray_packets", "bytes_sent", "gso_trains",
)


class Session:
    """One transfer's socket and engine; lives on its data plane's thread once begun.

    `on_close(session)` runs on that thread when the session ends, `on_moving(session)`
    once, when the client has acknowledged data (a repeated request is then new).
    """

    __slots__ = ("plane", "sock", "fd_no", "peer", "transfer", "fd", "timer_at", "request", "closed",
                 "on_close", "on_moving", "strangers")

    def __init__(self, plane: "DataPlane", sock: socket.socket, peer: tuple, fd: int | None,
                 request: bytes = b"", on_close: Callable[["Session"], None] | None = None,
                 on_moving: Callable[["Session"], None] | None = None) -> None:
        self.plane = plane
        self.on_close = on_close
        self.on_moving = on_moving
        self.sock = sock
        self.fd_no = sock.fileno()
        self.peer = peer
        self.fd = fd
        self.request = request
        self.transfer: ReadTransfer | None = None
        self.timer_at = float("inf")
        self.closed = False
        self.strangers: socket.socket | None = None

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

    def send_connected(self, data) -> None:
        try:
            self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            pass                      # socket buffer full: the retransmit timer covers it
        except OSError as exc:
            log.debug("send to %s failed: %s", self.peer, exc)

    # --- called on the data-plane thread only ----------------------------------------
    def connect(self) -> None:
        """Connect the socket to the peer; strangers get a socket of their own on the port.

        A connected socket is demultiplexed and routed once, not per packet
        (measured: about 7% more throughput with 32 lock-step clients), and a
        client that is gone shows as "port unreachable" at once. Datagrams
        from anyone else then go to a second socket bound to the same port,
        which answers them with ERROR 5 (RFC 1350). If the kernel refuses
        either step, the session stays unconnected and does both on one socket.
        Runs before the first packet goes out: until the client has heard from
        this port it sends nothing here that the strangers socket could take.
        """
        sock = self.sock
        try:
            strangers = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        except OSError as exc:        # out of descriptors: one socket does both jobs
            log.debug("session for %s stays unconnected: %s", self.peer, exc)
            return
        try:
            # Set after the session's own bind, so no other ephemeral bind can share the port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            strangers.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            strangers.setblocking(False)
            # On the wildcard address: the kernel's early demultiplexing looks only at the
            # first socket bound to the session's own address and port, and a socket bound
            # later goes first. There it would cost every ACK a route and socket lookup.
            strangers.bind(("0.0.0.0", sock.getsockname()[1]))
            sock.connect(self.peer)
        except OSError as exc:
            log.debug("session for %s stays unconnected: %s", self.peer, exc)
            strangers.close()
            return
        self.strangers = strangers
        self.plane.watch(strangers.fileno(), self.on_stranger)
        self.transfer.send = self.send_connected

    def on_stranger(self) -> None:
        while True:
            try:
                _data, addr = self.strangers.recvfrom(RECV_SIZE)
            except OSError:
                return
            self.refuse_stranger(self.strangers, addr)

    def refuse_stranger(self, sock: socket.socket, addr: tuple) -> None:
        """A datagram on this session's port from someone else: ERROR 5, the transfer goes on."""
        self.plane.counters["unknown_tid"] += 1
        try:
            sock.sendto(UNKNOWN_TID, addr)
        except OSError:
            pass

    def begin(self) -> None:
        self.connect()
        self.run_here()

    def run_here(self) -> None:
        """Start sending and serve this session on its plane's loop (connect() done)."""
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
        spin = SPIN_SECONDS if len(plane.sessions) == 1 and plane.may_spin else 0.0
        spin_until, slice_end = now + spin, now + SPIN_SLICE
        clock = time.monotonic
        while True:                   # drain: on a fast link ACKs queue while we send
            try:
                n, addr = recv(buf)
            except ConnectionRefusedError:
                # Port unreachable: the client went away (rebooted, gave up): no one to send to.
                transfer.abort("client gone (port unreachable)")
                self.close()
                return
            except OSError:           # EAGAIN: drained
                if spin and clock() < spin_until:
                    continue
                break
            if addr != peer:          # only while unconnected (see connect)
                self.refuse_stranger(self.sock, addr)
                continue
            if n == 4 and buf[1] == 4 and buf[0] == 0:     # an ACK: skip the general decoder
                transfer.ack((buf[2] << 8) | buf[3], now)
            else:
                transfer.handle(view[:n], now)
            if transfer.done:
                self.close()
                return
            if self.on_moving is not None and transfer.base > 1:
                self.on_moving(self)
                self.on_moving = None
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
        if plane.sessions.get(self.fd_no) is self:       # not so for a session run in a child
            del plane.sessions[self.fd_no]
            try:
                plane.epoll.unregister(self.fd_no)
            except OSError:
                pass
        self.sock.close()
        if self.strangers is not None:
            plane.unwatch(self.strangers.fileno())
            self.strangers.close()
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
        elif t.outcome.startswith(("client error", "client gone")):
            c["client_errors"] += 1
        else:
            c["sessions_failed"] += 1
        log.debug("done %s:%s %s, %d bytes in %d blocks", self.peer[0], self.peer[1], t.outcome,
                  t.bytes_sent, t.data_sent)
        if self.on_close is not None:
            self.on_close(self)

    @property
    def moving(self) -> bool:
        """The client has acknowledged data: a request repeated now is a new one."""
        return self.transfer.base > 1


def raise_fd_limit() -> None:
    """Each session holds two sockets and a file: allow as many descriptors as the system does."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError):
        pass


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

    def __init__(self, name: str = "tftp-data") -> None:
        super().__init__(name=name, daemon=True)
        self.epoll = select.epoll()
        self.sessions: dict[int, Session] = {}
        self.timers: list[tuple[float, int, Session]] = []
        self.inbox: collections.deque[Callable[[], None]] = collections.deque()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.epoll.register(self.wake_r, select.EPOLLIN)
        self.watched: dict[int, Callable[[], None]] = {}   # other fds: their callbacks
        self.counters: dict[str, int] = dict.fromkeys(PLANE_COUNTERS, 0)
        self.rbuf = bytearray(RECV_SIZE)
        self.rview = memoryview(self.rbuf)
        self.running = True
        # Spinning pays only for a transfer alone on the machine: a worker process
        # with one session among others would take a core the rest need (measured:
        # 2 clients on 2 spinning workers, 50 MB/s; tftpd-hpa 111). The pool says when.
        self.may_spin = True

    def watch(self, fd: int, callback: Callable[[], None]) -> None:
        """Call `callback` on this plane's thread whenever `fd` is readable."""
        self.watched[fd] = callback
        self.epoll.register(fd, select.EPOLLIN)

    def unwatch(self, fd: int) -> None:
        if self.watched.pop(fd, None) is not None:
            try:
                self.epoll.unregister(fd)
            except OSError:
                pass

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
                elif fd in self.watched:
                    self.watched[fd]()
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

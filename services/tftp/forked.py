"""One transfer in a process of its own, asleep in recv between blocks: tftpd-hpa's shape.

Why, measured with 32 lock-step clients on a 2-core VM: a worker serving many
sessions from one epoll loop is a one-to-many waker, and the kernel cannot
keep the clients it wakes on its own core. A third of those wake-ups crossed
cores, each with an inter-processor interrupt (0.25 per block), and the
machine spent 46-48 µs of CPU per block against tftpd-hpa's 37. A process per
transfer sends, then sleeps in recv: each wake-up, of the client by its data
and of the transfer by the ACK, is a synchronous one that stays on the core
(0.003 interrupts per block, 38 µs per block).

The worker forks the child after it has connected the session's socket; the
child keeps only that socket, the open file and the write end of a report
pipe. The worker keeps the strangers socket (ERROR 5) and the books. The
child writes one line "m" when the client has acknowledged data (a repeated
request is then a new one) and one JSON line with the transfer's outcome and
counters when it ends, then exits. SIGTERM aborts it.

Per block the code must be little, or it costs more than the kernel's work:
while the client acknowledges each block in turn, the compiled loop
(lockstep.c, through the engine's run_compiled) sends the next; without the
library, the engine's run_lockstep does the same in Python (about 30
bytecodes a block; what each measured is in native.py). Everything else goes
through the engine's general ack() and handle().
"""
from __future__ import annotations

import ctypes
import json
import mmap
import os
import signal
import socket
import struct
import time

from . import native
from .engine import ReadTransfer
from .plane import RECV_SIZE, SPIN_SECONDS

TIMEOUT_SLACK = 0.01         # re-arm SO_RCVTIMEO only when it is off by more than this
PR_SET_PDEATHSIG = 1
# What the worker's Session.close() books, read from the child's transfer at its end.
END_FIELDS = ("outcome", "data_sent", "retransmits", "dup_acks", "stray", "bytes_sent", "trains")


class Aborted(Exception):
    """SIGTERM from the worker: the appliance ended this transfer."""


def _raise_aborted(_signum, _frame) -> None:
    raise Aborted


def _die_with_parent(parent: int) -> None:
    """The worker's death (even SIGKILL) ends this transfer too, as it would in the worker."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:   # died before prctl took effect
        os._exit(1)


def _keep_only(fds: set[int]) -> None:
    """Close every descriptor but `fds`: the worker's control socket, other sessions'
    sockets and other children's report pipes must not stay open in this process."""
    low = 0
    for fd in sorted(fds) + [os.sysconf("SC_OPEN_MAX")]:
        if low < fd:
            os.closerange(low, fd)
        low = fd + 1


def _set_timeout(sock: socket.socket, seconds: float) -> float:
    seconds = max(seconds, 0.001)
    whole = int(seconds)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", whole, int((seconds - whole) * 1e6)))
    return seconds


def run_child(sock: socket.socket, file_fd: int, transfer: ReadTransfer, report_fd: int, spin: mmap.mmap,
              parent: int) -> None:
    """In the forked child: run the transfer to its end, report, exit. Never returns."""
    status = 1
    try:
        signal.signal(signal.SIGTERM, _raise_aborted)
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        _die_with_parent(parent)
        _keep_only({0, 1, 2, sock.fileno(), file_fd, report_fd})
        sock.setblocking(True)
        try:
            serve(sock, transfer, lambda: os.write(report_fd, b"m\n"), spin)
        except Aborted:
            transfer.abort("aborted")
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        end = {name: getattr(transfer, name) for name in END_FIELDS}
        os.write(report_fd, json.dumps(end).encode() + b"\n")
        status = 0
    finally:
        os._exit(status)


def serve(sock: socket.socket, transfer: ReadTransfer, moving, spin: mmap.mmap) -> None:
    """Blocking loop: recv with SO_RCVTIMEO as the retransmit timer.

    `spin[0]` is set by the worker while this is the only transfer: then wait
    for the next ACK spinning up to SPIN_SECONDS before sleeping, as the epoll
    plane does for a lone session. `moving()` is called once, when the client
    has acknowledged data. In the steady state (the last datagram was the
    awaited ACK, the timer is whole, no spinning) the lock-step loop, compiled
    or not, takes the ACKs until something else arrives.
    """
    buf = bytearray(RECV_SIZE)
    view = memoryview(buf)
    recv = sock.recv_into
    clock = time.monotonic
    ack = transfer.ack
    # The socket blocks, so a send never meets a full buffer; an error surfaces
    # here (below) and counts as a lost packet: the timer resends.
    transfer.send = sock.send
    pump = native.Pump(sock.fileno(), buf) if native.available()[0] else None
    timeout = _set_timeout(sock, transfer.interval)
    low, high = timeout - TIMEOUT_SLACK, timeout + TIMEOUT_SLACK
    now = clock()
    steady = False               # the last datagram was the awaited ACK: the timer is whole
    try:
        transfer.start()
    except ConnectionRefusedError:
        transfer.abort("client gone (port unreachable)")
    except OSError:
        pass
    while not transfer.done:
        base = transfer.base
        try:
            if steady and moving is None and not spin[0] and transfer.lockstep():
                if pump is not None:
                    n = transfer.run_compiled(pump, clock)
                else:
                    n = transfer.run_lockstep(recv, buf, clock)
            elif spin[0]:
                n = _spin(recv, buf, clock)
            else:
                n = recv(buf)
            now = clock()
            if n == 4 and buf[1] == 4 and buf[0] == 0:     # an ACK: skip the general decoder
                ack((buf[2] << 8) | buf[3], now)
            else:
                transfer.handle(view[:n], now)
        except BlockingIOError:                        # SO_RCVTIMEO ran out
            now = clock()
        except ConnectionRefusedError:
            # Port unreachable: the client went away (rebooted, gave up): no one to send to.
            transfer.abort("client gone (port unreachable)")
            return
        except OSError:
            now = clock()
        steady = transfer.base != base and low < transfer.deadline - now < high
        if moving is not None and transfer.base > 1:
            moving()
            moving = None
        # After an ACK the timer is the whole interval again: nothing to do. After
        # a timeout, a duplicate or a stray packet it is what is left of it, so that
        # no stream of junk can postpone a retransmission.
        left = transfer.deadline - now
        if not low < left < high:
            if left <= 0:
                transfer.on_timer(now)
                left = transfer.deadline - now
            if not transfer.done:
                timeout = _set_timeout(sock, left)
                low, high = timeout - TIMEOUT_SLACK, timeout + TIMEOUT_SLACK


def _spin(recv, buf: bytearray, clock) -> int:
    until = clock() + SPIN_SECONDS
    while True:
        try:
            return recv(buf, 0, socket.MSG_DONTWAIT)
        except BlockingIOError:
            if clock() >= until:
                return recv(buf)

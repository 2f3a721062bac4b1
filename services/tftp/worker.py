"""A TFTP data-plane worker process: runs the transfers the appliance hands over.

Why processes: one Python thread serves about one core's worth of lock-step
ACKs, and threads share the GIL (two data-plane threads were measured to gain
nothing). The appliance answers requests, resolves and opens files on its
asyncio side, then passes the open file and the session's socket to a worker
over a Unix socket (SCM_RIGHTS). The worker connects the session's socket,
forks a process that runs the transfer (forked.py: why a process each), and
keeps the books: the strangers socket on the session's port, the child's
reports, the counters. It tells the appliance when the client has
acknowledged data and when the session ends. If it cannot fork, it runs the
transfer on its own DataPlane loop, as the in-process thread does.

Messages (SOCK_SEQPACKET, one JSON object each; see pool.py for the other end):
  in:  {"t": "start", "sid", "peer", "size", "options", "limits"} with fds [socket, file]
       {"t": "abort", "sid", "why"}
       {"t": "spin", "on"}: whether a lone session may spin (see DataPlane.may_spin)
  out: {"t": "moving", "sid"}
       {"t": "end", "sid", "outcome", "bytes", "blocks", "counters"}
When the appliance closes its end, the worker ends its sessions and exits.
"""
from __future__ import annotations

import json
import logging
import mmap
import os
import signal
import socket
import sys
import time

from .engine import FileSource, Limits, ReadTransfer
from .forked import run_child
from .plane import DataPlane, Session, raise_fd_limit

log = logging.getLogger("si.tftp.worker")

CONTROL_MESSAGE = 65536
# A transfer process holds about 2 MB of its own (measured: Private_Dirty of a
# child 300 blocks in). Past this many, transfers run on the worker's epoll loop.
MAX_CHILDREN = 128


class Child:
    """A transfer running in a forked process (forked.py), as its worker sees it."""

    __slots__ = ("pid", "report_fd", "session", "pending", "end", "why")

    def __init__(self, pid: int, report_fd: int, session: Session) -> None:
        self.pid, self.report_fd, self.session = pid, report_fd, session
        self.pending = b""
        self.end: dict | None = None     # the child's last line: outcome and counters
        self.why = ""                    # set when the appliance aborted it


class Worker:
    def __init__(self, control: socket.socket) -> None:
        self.control = control
        control.setblocking(False)
        self.plane = DataPlane("tftp-worker")
        self.plane.may_spin = False        # until the appliance says this is the only transfer
        self.sessions: dict[int, Session] = {}
        self.children: dict[int, Child] = {}
        # Read by every child: whether it is the only transfer (and so may spin).
        self.spin = mmap.mmap(-1, 1)
        self.plane.watch(control.fileno(), self.on_control)

    def run(self) -> None:
        self.plane.run()          # on this process's main thread: no other thread here

    def report(self, message: dict) -> None:
        try:
            self.control.send(json.dumps(message).encode())
        except OSError:
            pass                  # the appliance is gone; we stop at its EOF

    def on_control(self) -> None:
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.control, CONTROL_MESSAGE, 2)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if not data:
                for fd in fds:
                    os.close(fd)
                self.plane.running = False      # the appliance closed its end (or died)
                return
            try:
                message = json.loads(data)
                if message["t"] == "start" and len(fds) == 2:
                    fds, handed = [], fds
                    self.start(message, handed)
                elif message["t"] == "spin":
                    self.plane.may_spin = bool(message["on"])
                    self.spin[0] = int(self.plane.may_spin)
                elif message["t"] == "abort":
                    self.abort(message["sid"], message["why"])
            except Exception:
                log.exception("bad control message")
            for fd in fds:
                os.close(fd)

    def start(self, message: dict, fds: list[int]) -> None:
        """Run a handed-over transfer; from here on this worker owns both descriptors."""
        sid = message.get("sid")
        sock_fd, file_fd = fds
        sock = socket.socket(fileno=sock_fd)
        try:
            session = Session(self.plane, sock, tuple(message["peer"]), file_fd,
                              on_close=lambda s: self.ended(sid, s),
                              on_moving=lambda s: self.report({"t": "moving", "sid": sid}))
            session.transfer = ReadTransfer(FileSource(file_fd, message["size"]), session.send, message["options"],
                                            time.monotonic(), Limits(**message["limits"]))
            session.enable_trains()
        except Exception:
            sock.close()
            os.close(file_fd)
            self.plane.counters["sessions_failed"] += 1
            self.report({"t": "end", "sid": sid, "outcome": "internal error", "counters": self.plane.counters})
            raise
        self.sessions[sid] = session
        try:
            session.connect()
            if not self.fork(sid, session):
                session.run_here()
        except Exception:
            session.abort("internal error")      # closes both and reports the end
            raise

    def fork(self, sid: int, session: Session) -> bool:
        """Run the session in a child process of its own (see forked.py); False if none can start."""
        if len(self.children) >= MAX_CHILDREN:
            return False
        report_r, report_w = os.pipe()
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:
            log.warning("cannot fork for a transfer (%s): it runs in the worker", exc)
            os.close(report_r)
            os.close(report_w)
            return False
        if pid == 0:
            run_child(session.sock, session.fd, session.transfer, report_w, self.spin, parent)
        os.close(report_w)
        session.sock.close()                 # the child's now; the strangers socket stays here
        os.close(session.fd)
        session.fd = None
        os.set_blocking(report_r, False)
        child = self.children[sid] = Child(pid, report_r, session)
        self.plane.watch(report_r, lambda: self.on_child(sid, child))
        return True

    def on_child(self, sid: int, child: Child) -> None:
        try:
            data = os.read(child.report_fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        if data:
            child.pending += data
            while b"\n" in child.pending:
                line, _, child.pending = child.pending.partition(b"\n")
                session = child.session
                if line == b"m" and session.on_moving is not None:
                    session.on_moving(session)
                    session.on_moving = None
                elif line.startswith(b"{"):
                    child.end = json.loads(line)
            return
        # EOF: the child has exited (or died). Its transfer ends here, on the books.
        self.plane.unwatch(child.report_fd)
        os.close(child.report_fd)
        self.children.pop(sid, None)
        transfer = child.session.transfer
        end = child.end or {}
        for name, value in end.items():
            setattr(transfer, name, value)
        outcome = end.get("outcome")
        if outcome in (None, "aborted"):      # killed, or ended by our SIGTERM: say why
            outcome = child.why or "internal error"
        transfer.abort(outcome)
        child.session.close()

    def abort(self, sid: int, why: str) -> None:
        child = self.children.get(sid)
        if child is not None:
            child.why = why
            try:
                os.kill(child.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass                         # already gone: its EOF is on the way
            return
        session = self.sessions.get(sid)
        if session is not None:
            session.abort(why)

    def ended(self, sid: int, session: Session) -> None:
        self.sessions.pop(sid, None)
        t = session.transfer
        self.report({"t": "end", "sid": sid, "outcome": t.outcome, "bytes": t.bytes_sent, "blocks": t.data_sent,
                     "counters": self.plane.counters})


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s[%(process)d] %(message)s")
    raise_fd_limit()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)   # transfer children reap themselves
    # A stop sent to the whole group or cgroup (timeout, systemd) is the appliance's to act
    # on: it closes this worker's control socket, and the worker ends at that EOF (also if
    # the appliance is killed). Dying first would look like a crash to the pool.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    control = socket.socket(fileno=int(argv[0]))
    Worker(control).run()
    os._exit(0)                   # nothing left to flush; skip interpreter teardown


if __name__ == "__main__":
    main(sys.argv[1:])

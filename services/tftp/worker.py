"""A TFTP data-plane worker process: runs the transfers the appliance hands over.

Why processes: one Python thread serves about one core's worth of lock-step
ACKs, and threads share the GIL (two data-plane threads were measured to gain
nothing). The appliance answers requests, resolves and opens files on its
asyncio side, then passes the open file and the session's socket to a worker
over a Unix socket (SCM_RIGHTS). The worker runs the same DataPlane loop as
the in-process thread and tells the appliance when the client has
acknowledged data and when the session ends.

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
import os
import socket
import sys
import time

from .engine import FileSource, Limits, ReadTransfer
from .plane import DataPlane, Session, raise_fd_limit

log = logging.getLogger("si.tftp.worker")

CONTROL_MESSAGE = 65536


class Worker:
    def __init__(self, control: socket.socket) -> None:
        self.control = control
        control.setblocking(False)
        self.plane = DataPlane("tftp-worker")
        self.plane.may_spin = False        # until the appliance says this is the only transfer
        self.sessions: dict[int, Session] = {}
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
                elif message["t"] == "abort":
                    session = self.sessions.get(message["sid"])
                    if session is not None:
                        session.abort(message["why"])
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
            session.begin()
        except Exception:
            session.abort("internal error")      # closes both and reports the end
            raise

    def ended(self, sid: int, session: Session) -> None:
        self.sessions.pop(sid, None)
        t = session.transfer
        self.report({"t": "end", "sid": sid, "outcome": t.outcome, "bytes": t.bytes_sent, "blocks": t.data_sent,
                     "counters": self.plane.counters})


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s[%(process)d] %(message)s")
    raise_fd_limit()
    control = socket.socket(fileno=int(argv[0]))
    Worker(control).run()
    os._exit(0)                   # nothing left to flush; skip interpreter teardown


if __name__ == "__main__":
    main(sys.argv[1:])

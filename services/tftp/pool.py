"""The appliance's side of the data-plane worker processes (worker.py is the other).

The pool starts the workers, hands each new file transfer to the least busy
one (its socket and open file go over SCM_RIGHTS), and reads their reports on
the asyncio loop. A worker that dies takes its transfers with it (they are
counted as failed; clients retry) and is started again; after three deaths
within a minute the pool gives up and the server keeps transfers in process.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from .engine import Limits
from .plane import PLANE_COUNTERS

log = logging.getLogger("si.tftp")

PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])   # where `services` is importable from
DEATHS_TOLERATED = 3
DEATH_WINDOW = 60.0


def default_workers() -> int:
    """One per core, at most four: each forks the transfers it is given and keeps their books."""
    return max(1, min(4, os.cpu_count() or 1))


class RemoteSession:
    """What the asyncio side knows of a transfer running in a worker."""

    __slots__ = ("peer", "request", "worker", "sid", "moving")

    def __init__(self, peer: tuple, request: bytes, worker: "WorkerProcess", sid: int) -> None:
        self.peer, self.request, self.worker, self.sid = peer, request, worker, sid
        self.moving = False

    def abort(self, why: str) -> None:
        self.worker.send({"t": "abort", "sid": self.sid, "why": why})


class WorkerProcess:
    def __init__(self, pool: "WorkerPool") -> None:
        self.pool = pool
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [PACKAGE_ROOT,
                                                                          os.environ.get("PYTHONPATH")])))
        try:
            # A session of its own: a terminal's Ctrl-C reaches only the appliance, which
            # then closes the workers itself (they had printed KeyboardInterrupt tracebacks
            # and been restarted as if they had crashed).
            self.proc = subprocess.Popen([sys.executable, "-m", "services.tftp.worker", str(child.fileno())],
                                         pass_fds=[child.fileno()], env=env, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        finally:
            child.close()
        self.sessions: dict[int, RemoteSession] = {}
        self.counters: dict[str, int] = dict.fromkeys(PLANE_COUNTERS, 0)
        self.started = time.monotonic()
        pool.loop.add_reader(self.sock.fileno(), self.on_readable)

    def send(self, message: dict, fds: list[int] = ()) -> None:
        data = json.dumps(message).encode()
        if fds:
            socket.send_fds(self.sock, [data], list(fds))
        else:
            try:
                self.sock.send(data)
            except OSError:
                pass              # dead: on_readable sees the EOF and cleans up

    def on_readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self.pool.died(self)
                return
            try:
                message = json.loads(data)
            except ValueError:
                log.error("tftp worker %d sent a bad report", self.proc.pid)
                continue
            session = self.sessions.get(message.get("sid"))
            if message.get("t") == "moving" and session is not None:
                session.moving = True
            elif message.get("t") == "end":
                self.counters = message.get("counters", self.counters)
                if session is not None:
                    del self.sessions[session.sid]
                    self.pool.on_end(session, message)

    def close(self, wait: float = 5.0) -> None:
        try:
            self.pool.loop.remove_reader(self.sock.fileno())
        except (ValueError, OSError, RuntimeError):
            pass
        self.sock.close()         # the worker sees EOF, ends its sessions and exits
        try:
            self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class WorkerPool:
    def __init__(self, count: int, limits: Limits, on_end: Callable[[RemoteSession, dict], None]) -> None:
        self.loop = asyncio.get_running_loop()
        self.limits = dataclasses.asdict(limits)
        self.on_end = on_end
        self.deaths: list[float] = []
        self.retired: dict[str, int] = dict.fromkeys(PLANE_COUNTERS, 0)   # counters of dead workers
        self.lost = 0                                                        # sessions they took along
        self.next_sid = 1
        self.spinning = False
        self.workers = [WorkerProcess(self) for _ in range(count)]

    @property
    def usable(self) -> bool:
        return bool(self.workers)

    def hand_over(self, sock: socket.socket, fd: int, size: int, peer: tuple, request: bytes,
                  options: dict[str, str]) -> RemoteSession:
        """Give a ready session to the least busy worker; raises OSError if it cannot take it."""
        worker = min(self.workers, key=lambda w: len(w.sessions))
        sid, self.next_sid = self.next_sid, self.next_sid + 1
        session = RemoteSession(peer, request, worker, sid)
        worker.sessions[sid] = session      # before the worker can answer the client
        try:
            worker.send({"t": "start", "sid": sid, "peer": list(peer), "size": size, "options": options,
                         "limits": self.limits}, [sock.fileno(), fd])
        except OSError:
            del worker.sessions[sid]
            raise
        return session

    def died(self, worker: WorkerProcess) -> None:
        if worker not in self.workers:
            return
        self.workers.remove(worker)
        worker.close(wait=1.0)
        status = worker.proc.returncode
        for key, value in worker.counters.items():
            self.retired[key] = self.retired.get(key, 0) + value
        lost = list(worker.sessions.values())
        self.lost += len(lost)
        for session in lost:
            self.on_end(session, {"outcome": "worker died"})
        now = time.monotonic()
        self.deaths = [t for t in self.deaths if now - t < DEATH_WINDOW] + [now]
        if len(self.deaths) > DEATHS_TOLERATED:
            log.error("tftp worker %d died (status %s, %d transfers lost); too many deaths: "
                      "transfers now run in the appliance process", worker.proc.pid, status, len(lost))
            return
        log.error("tftp worker %d died (status %s, %d transfers lost); starting another",
                  worker.proc.pid, status, len(lost))
        self.workers.append(WorkerProcess(self))
        if self.spinning:
            self.workers[-1].send({"t": "spin", "on": True})

    def allow_spin(self, on: bool) -> None:
        """Tell the workers whether a lone session may spin (only when it is the only transfer)."""
        if on != self.spinning:
            self.spinning = on
            for worker in self.workers:
                worker.send({"t": "spin", "on": on})

    def counters(self) -> dict[str, int]:
        total = dict(self.retired)
        for worker in self.workers:
            for key, value in worker.counters.items():
                total[key] = total.get(key, 0) + value
        total["sessions_failed"] = total.get("sessions_failed", 0) + self.lost
        return total

    def close(self) -> None:
        workers, self.workers = self.workers, []
        for worker in workers:
            try:
                worker.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for worker in workers:
            worker.close()

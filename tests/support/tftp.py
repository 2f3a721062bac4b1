"""Shared helpers for the TFTP server tests: a server in a thread, a raw client."""
from __future__ import annotations

import asyncio
import shutil
import socket
import struct
import threading
import time

from services.tftp import packet as P
from services.tftp.server import TftpServer


class ServerThread:
    """A TftpServer on 127.0.0.1:<free port> in its own event loop thread."""

    def __init__(self, root, **kw) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = TftpServer(root, "127.0.0.1", 0, **kw)
        started = threading.Event()
        self.error: BaseException | None = None

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(self.server.start())
            except BaseException as exc:   # surface bind errors to the test
                self.error = exc
                started.set()
                return
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        started.wait(10)
        if self.error:
            raise self.error
        self.port = self.server.port

    @property
    def counters(self) -> dict[str, int]:
        return self.server.health().counters

    def stop(self) -> None:
        def shutdown() -> None:
            self.server.close()
            self.loop.stop()
        self.loop.call_soon_threadsafe(shutdown)
        self.thread.join(10)
        self.loop.close()


class RawClient:
    """A hand-driven TFTP client on a UDP socket, for the cases real clients never produce."""

    def __init__(self, port: int, timeout: float = 2.0) -> None:
        self.server = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(timeout)
        self.peer: tuple | None = None

    def send_raw(self, data: bytes, to: tuple | None = None) -> None:
        self.sock.sendto(data, to or self.server)

    def rrq(self, name: str, mode: str = "octet", **options: str) -> None:
        self.send_raw(P.Request(P.RRQ, name, mode, dict(options)).encode())

    def recv(self):
        data, addr = self.sock.recvfrom(70000)
        self.peer = addr
        return P.decode(data)

    def recv_or_none(self, timeout: float = 0.3):
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            return self.recv()
        except socket.timeout:
            return None
        finally:
            self.sock.settimeout(old)

    def ack(self, block: int) -> None:
        self.sock.sendto(struct.pack("!HH", P.ACK, block & 0xFFFF), self.peer)

    def get(self, name: str, **options: str) -> bytes:
        """A full correct transfer, window 1."""
        self.rrq(name, **options)
        out = bytearray()
        blksize = int(options.get("blksize", 512))
        while True:
            pkt = self.recv()
            if isinstance(pkt, P.OAck):
                blksize = int(pkt.options.get("blksize", 512))
                self.ack(0)
                continue
            if isinstance(pkt, P.Error):
                raise RuntimeError(f"ERROR {pkt.code} {pkt.message}")
            out += pkt.payload
            self.ack(pkt.block)
            if len(pkt.payload) < blksize:
                return bytes(out)

    def close(self) -> None:
        self.sock.close()


def need(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is not installed (Debian package: " \
                 f"{ {'curl': 'curl', 'tftp': 'tftp-hpa', 'atftp': 'atftp'}[tool] })"
    return path


def wait_for(check, timeout: float = 5.0) -> bool:
    """Counters move on the data-plane thread: give it a moment on a loaded machine."""
    end = time.time() + timeout
    while time.time() < end:
        if check():
            return True
        time.sleep(0.02)
    return check()

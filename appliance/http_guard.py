"""Slow and greedy HTTP clients: a deadline for each request's headers and body, a cap per client address.

aiohttp bounds header sizes but not time: a client that dribbles a header a
byte at a time (slowloris), or never finishes a body, holds its connection for
as long as it likes, and one address may open any number of them. The guard
sits between the socket and aiohttp's protocol: `RequestClock` (pure) follows
where each request's headers and body end in the bytes received and says by
when the current one must be complete; `GuardedProtocol` closes a connection
that misses that, and refuses connections past the per-address cap. A request
whose bytes have all arrived has no deadline, so a long download is never cut.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

MAX_HEADER_BYTES = 64 * 1024      # aiohttp refuses far smaller header lines itself; this only bounds our copy


@dataclass
class RequestClock:
    """Where the request stream stands: idle, in a request's headers, or in its body."""
    header_timeout: float
    body_timeout: float
    state: str = "idle"               # idle | headers | body | chunked
    deadline: float | None = None     # when the current request must be complete
    _head: bytes = b""
    _remaining: int = 0

    def feed(self, data: bytes, now: float) -> None:
        while data:
            if self.state == "idle":
                self.state, self.deadline, self._head = "headers", now + self.header_timeout, b""
            if self.state == "headers":
                data = self._headers(data, now)
            elif self.state == "body":
                taken = min(self._remaining, len(data))
                self._remaining -= taken
                data = data[taken:]
                if self._remaining == 0:
                    self._idle()
            else:                      # chunked: until the last chunk's empty line
                self._head = (self._head + data)[-5:]
                data = b""
                if self._head == b"0\r\n\r\n":
                    self._idle()

    def _headers(self, data: bytes, now: float) -> bytes:
        seen = len(self._head)
        self._head = (self._head + data)[:MAX_HEADER_BYTES + 4]
        end = self._head.find(b"\r\n\r\n", max(0, seen - 3))
        if end < 0:
            return b""
        rest = data[end + 4 - seen:]
        fields = {}
        for line in self._head[:end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        if b"chunked" in fields.get(b"transfer-encoding", b"").lower():
            self.state, self.deadline, self._head = "chunked", now + self.body_timeout, b""
            return rest
        try:
            length = int(fields.get(b"content-length", b"0"))
        except ValueError:
            length = 0                 # aiohttp answers 400 and closes
        if length > 0:
            self.state, self.deadline, self._remaining = "body", now + self.body_timeout, length
        else:
            self._idle()
        return rest

    def _idle(self) -> None:
        self.state, self.deadline, self._head, self._remaining = "idle", None, b"", 0


@dataclass
class Guard:
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_per_client: int = 32
    open: Counter = field(default_factory=Counter)
    counters: dict[str, int] = field(default_factory=dict)

    def count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1


class GuardedProtocol(asyncio.Protocol):
    """aiohttp's protocol for one connection, with the guard's deadline and cap in front of it."""

    def __init__(self, inner: asyncio.Protocol, guard: Guard) -> None:
        self.inner, self.guard = inner, guard
        self.clock = RequestClock(guard.header_timeout, guard.body_timeout)
        self.client: str | None = None
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        peer = transport.get_extra_info("peername") or ("?",)
        if self.guard.open[peer[0]] >= self.guard.max_per_client:
            self.guard.count("connections_refused")
            transport.abort()
            return
        self.client, self.transport = peer[0], transport
        self.guard.open[self.client] += 1
        self._arm(asyncio.get_running_loop().time() + self.guard.header_timeout)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.clock.feed(data, asyncio.get_running_loop().time())
        self._arm(self.clock.deadline)
        self.inner.data_received(data)

    def eof_received(self):
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc) -> None:
        if self.client is None:        # refused at the door: aiohttp never saw it
            return
        if self.timer:
            self.timer.cancel()
        self.guard.open[self.client] -= 1
        if not self.guard.open[self.client]:
            del self.guard.open[self.client]
        self.inner.connection_lost(exc)

    def _arm(self, when: float | None) -> None:
        if self.timer:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_at(when, self._expired) if when is not None else None

    def _expired(self) -> None:
        self.guard.count("slow_requests_closed")
        self.transport.abort()


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through the guard (aiohttp's TCPSite, with a wrapped factory)."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: Guard) -> None:
        super().__init__(runner)
        self._host, self._port, self._guard = host, port, guard

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        factory = self._runner.server
        self._server = await asyncio.get_running_loop().create_server(
            lambda: GuardedProtocol(factory(), self._guard), self._host, self._port, reuse_address=True)

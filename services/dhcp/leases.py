"""Lease bookkeeping: who holds which address, in memory and durably.

LeaseBook is the in-memory view the policy consults (O(1) lookups by MAC and
by address, O(1) amortised allocation: a per-pool cursor over never-used
addresses, then a free list, then a heap of expiries). LeaseWriter is the
durable side: bindings the policy made are written to the store by a thread,
many per transaction (group commit), and an ACK that depends on them is sent
only once its commit returned. Journal does the same inline (no thread).
"""
from __future__ import annotations

import heapq
import logging
import queue
import threading
from collections import deque
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Callable, Iterable

from services.records import Lease

from .settings import Pool, SubnetConfig
from .state import LeaseSink

OFFER_HOLD = 60.0        # seconds an offered address stays set aside for its client


@dataclass
class Binding:
    mac: str
    ip: IPv4Address
    hostname: str | None
    expires: float
    state: str = "bound"      # offered | bound | released | declined

    def active(self, now: float) -> bool:
        return self.expires > now

    def as_lease(self) -> Lease:
        return Lease(mac=self.mac, ip=str(self.ip), hostname=self.hostname,
                     expires=self.expires, state=self.state)


class _PoolCursor:
    """Hands out addresses of one pool: never-used ones first, then recycled."""

    def __init__(self, pool: Pool) -> None:
        self.first = int(pool.first)
        self.last = int(pool.last)
        self.next = self.first
        self.free: deque[int] = deque()
        self.expiries: list[tuple[float, int]] = []
        self.tracked: set[int] = set()       # addresses with an entry in expiries

    def __contains__(self, ip: int) -> bool:
        return self.first <= ip <= self.last

    def candidates(self, now: float):
        while self.free:
            yield self.free.popleft(), False
        while self.next <= self.last:
            ip = self.next
            self.next += 1
            yield ip, False
        # Only expired bindings are left to recycle; the heap yields them oldest first.
        # Entries are one per address; a renewed one is pushed back with its new expiry.
        while self.expiries and self.expiries[0][0] <= now:
            ip = heapq.heappop(self.expiries)[1]
            self.tracked.discard(ip)
            yield ip, True

    def track(self, ip: int, expires: float) -> None:
        if ip not in self.tracked:
            self.tracked.add(ip)
            heapq.heappush(self.expiries, (expires, ip))


class LeaseBook:
    def __init__(self, subnets: Iterable[SubnetConfig]) -> None:
        self.by_mac: dict[str, Binding] = {}
        self.by_ip: dict[IPv4Address, Binding] = {}
        self.cursors: dict[Pool, _PoolCursor] = {p: _PoolCursor(p) for s in subnets for p in s.pools}

    # --- loading -------------------------------------------------------------
    def load(self, leases: Iterable[Lease]) -> int:
        count = 0
        for lease in leases:
            try:
                ip = IPv4Address(lease.ip)
            except ValueError:
                continue
            self._put(Binding(lease.mac, ip, lease.hostname, lease.expires, lease.state))
            count += 1
        return count

    # --- queries ---------------------------------------------------------------
    def for_mac(self, mac: str) -> Binding | None:
        return self.by_mac.get(mac)

    def holder(self, ip: IPv4Address, now: float) -> Binding | None:
        """The binding that currently keeps ip from others, if any."""
        b = self.by_ip.get(ip)
        return b if b is not None and b.active(now) else None

    def available(self, ip: IPv4Address, mac: str, now: float) -> bool:
        b = self.holder(ip, now)
        return b is None or (b.mac == mac and b.state != "declined")

    # --- changes ---------------------------------------------------------------
    def allocate(self, subnet: SubnetConfig, mac: str, now: float,
                 reserved: Callable[[IPv4Address], bool]) -> IPv4Address | None:
        """A free pool address of subnet for mac, or None when the pools are full."""
        for pool in subnet.pools:
            cursor = self.cursors.get(pool)
            if cursor is None:
                continue
            for n, from_heap in cursor.candidates(now):
                ip = IPv4Address(n)
                held = self.holder(ip, now)
                if held is not None and held.mac != mac:
                    if from_heap:
                        cursor.track(n, held.expires)   # still held: track its new expiry
                    continue
                if held is not None and held.state == "declined":
                    continue
                if not reserved(ip):
                    return ip
        return None

    def set(self, mac: str, ip: IPv4Address, hostname: str | None, expires: float,
            state: str) -> Binding:
        old = self.by_mac.get(mac)
        if old is not None and old.ip != ip:
            self._drop(old)
        b = Binding(mac, ip, hostname, expires, state)
        self._put(b)
        return b

    def release(self, binding: Binding, now: float, state: str = "released",
                hold: float = 0.0) -> Binding:
        """End a binding now (RELEASE) or set its address aside for hold seconds (DECLINE)."""
        b = Binding(binding.mac, binding.ip, binding.hostname, now + hold, state)
        self._put(b)
        cursor = self._cursor_of(b.ip)
        if cursor is not None:
            if hold:
                cursor.tracked.discard(int(b.ip))   # re-track at the end of the hold
            cursor.track(int(b.ip), b.expires)
            if not hold:
                cursor.free.append(int(b.ip))
        return b

    def forget_offer(self, mac: str) -> None:
        """The client took another server's offer: free what we held for it."""
        b = self.by_mac.get(mac)
        if b is not None and b.state == "offered":
            self._drop(b)

    # --- internals -------------------------------------------------------------
    def _put(self, b: Binding) -> None:
        displaced = self.by_ip.get(b.ip)
        if displaced is not None and displaced.mac != b.mac:
            self.by_mac.pop(displaced.mac, None)
        self.by_mac[b.mac] = b
        self.by_ip[b.ip] = b
        cursor = self._cursor_of(b.ip)
        if cursor is not None:           # one heap entry per held address
            cursor.track(int(b.ip), b.expires)

    def _drop(self, b: Binding) -> None:
        if self.by_mac.get(b.mac) is b:
            del self.by_mac[b.mac]
        if b.state == "declined":
            return      # the address stays set aside until its hold ends
        if self.by_ip.get(b.ip) is b:
            del self.by_ip[b.ip]
            cursor = self._cursor_of(b.ip)
            if cursor is not None:
                cursor.free.append(int(b.ip))

    def _cursor_of(self, ip: IPv4Address) -> _PoolCursor | None:
        n = int(ip)
        for cursor in self.cursors.values():
            if n in cursor:
                return cursor
        return None


class Journal:
    """Group commit: queue lease rows, write them all in one transaction."""

    def __init__(self, store: LeaseSink) -> None:
        self.store = store
        self.pending: dict[str, Lease] = {}
        self.commits = 0
        self.written = 0

    def add(self, binding: Binding) -> None:
        self.pending[binding.mac] = binding.as_lease()

    def flush(self) -> int:
        if not self.pending:
            return 0
        batch = list(self.pending.values())
        self.store.save_leases(batch)    # raises on failure: nothing waiting on it is sent
        self.pending.clear()
        self.commits += 1
        self.written += len(batch)
        return len(batch)


class LeaseWriter:
    """Group commit off the event loop: a thread with its own connection.

    submit() queues bindings with a callback; the thread takes everything
    queued so far, writes it in one transaction, then hands each callback
    (ok=True/False) back to the event loop. While one commit runs (WAL
    checkpoints can fsync), the next batch gathers, and the loop keeps
    answering DISCOVERs. Nothing waiting on a lease is sent before its commit.
    """

    def __init__(self, connect: Callable[[], LeaseSink], loop) -> None:
        self.connect = connect     # called in the thread: a connection of its own
        self.loop = loop
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.commits = 0
        self.written = 0
        self.failures = 0
        self.log = logging.getLogger("si.dhcp.leases")
        self.thread = threading.Thread(target=self._run, name="dhcp-lease-writer", daemon=True)
        self.thread.start()

    def submit(self, bindings: list[Binding], done) -> None:
        self.queue.put(([b.as_lease() for b in bindings], done))

    def close(self, timeout: float = 10.0) -> None:
        self.queue.put(None)
        self.thread.join(timeout)

    def _run(self) -> None:
        store = self.connect()
        try:
            while True:
                item = self.queue.get()
                if item is None:
                    return
                batch = [item]
                stop = False
                while True:             # everything queued meanwhile joins this commit
                    try:
                        more = self.queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.append(more)
                leases: dict[str, Lease] = {}
                for rows, _ in batch:
                    for lease in rows:
                        leases[lease.mac] = lease
                ok = True
                try:
                    store.save_leases(leases.values())
                    self.commits += 1
                    self.written += len(leases)
                except Exception:
                    ok = False
                    self.failures += 1
                    self.log.exception("could not store %d leases; their ACKs are held back", len(leases))
                for _, done in batch:
                    try:
                        self.loop.call_soon_threadsafe(done, ok)
                    except RuntimeError:      # the loop is gone: we are shutting down
                        pass
                if stop:
                    return
        finally:
            store.close()

"""One read transfer as a pure state machine: no sockets, no clock of its own.

The server feeds it datagrams from the session's peer (`handle`) and timer
expiries (`on_timer`), with the current time; the engine answers through the
injected `send` callable (which must consume the bytes before returning: the
engine reuses its packet buffer, so the hot path allocates nothing per block)
and reads the file through `source.read_many(views, offset, want)` (one
os.preadv scattering a batch of up to BATCH_BLOCKS blocks into their packet
slots). `deadline` says when the engine wants `on_timer` next. A transfer
with a process of its own may hand the lock-step steady state to
`run_lockstep`, which also pulls the ACKs through an injected `recv_into`, or
to `run_compiled`, the same loop compiled (lockstep.c) behind an injected pump.

Rules that make it robust (the TFTP part of the project's BAD-INPUTS list):
- options are validated one by one; a bad value drops that option, never the
  request (RFC 2347: the server ignores options it does not accept);
- block numbers are absolute internally and go on the wire modulo 65536, so
  files over 65535 blocks roll over (to 0, as tftp-hpa/atftp/curl expect);
- a duplicate ACK never causes a send (no Sorcerer's Apprentice storm); only
  the timer retransmits, with doubling interval and a bounded retry count;
- with a window (RFC 7440) an ACK inside the window slides it; an ACK short of
  what was sent means the client saw a gap, so sending restarts after it, at
  most once per window's worth of progress (clients that ACK every block
  cannot make us resend a window per ACK);
- ACK of block 0 after data started, or of a block never sent, is ignored;
- the file's length is fixed when the transfer starts (it is what tsize told
  the client); a read that comes up short of it ends the session with an ERROR
  instead of handing the client a silently truncated file.
"""
from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass, field
from typing import Callable, Protocol

from .packet import ERR_UNDEFINED, PacketError, decode, encode_error, encode_oack, Error

DEFAULT_BLKSIZE = 512
MIN_BLKSIZE = 8          # RFC 2348
MAX_BLKSIZE = 65464      # RFC 2348
MAX_DIGITS = 10          # longer numbers are refused before int() sees them
WINDOW_BUFFER = 256 * 1024   # per-session packet buffer cap (window x blksize can be 4 MB)
# Blocks read ahead with one preadv, capped by WINDOW_BUFFER (178 at blksize 1468):
# measured with 32 lock-step clients, 178 rather than 64 gave 2% more throughput,
# the general path between two batches running a third as often.
BATCH_BLOCKS = 256
_HEADER = struct.Struct("!HH")


class Source(Protocol):
    size: int

    def read_into(self, view: memoryview, offset: int) -> int: ...

    def read_many(self, views: list[memoryview], offset: int, want: int) -> int: ...


@dataclass(frozen=True)
class Limits:
    max_blksize: int = MAX_BLKSIZE
    max_window: int = 64
    timeout: float = 1.0        # first retransmit interval when the client names none
    max_timeout: float = 5.0    # back-off cap
    retries: int = 5            # retransmissions of one window before giving up


@dataclass(frozen=True)
class Negotiated:
    blksize: int = DEFAULT_BLKSIZE
    windowsize: int = 1
    timeout: float = 1.0
    reply: dict[str, str] = field(default_factory=dict)   # what goes into the OACK


def _number(text: str | None, low: int, high: int) -> int | None:
    """A plain decimal in [low, high], else None: no sign, space, exponent or non-ASCII digit."""
    if text is None or not 0 < len(text) <= MAX_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if low <= value <= high else None


def negotiate(options: dict[str, str], size: int, limits: Limits = Limits()) -> Negotiated:
    reply: dict[str, str] = {}
    blksize = DEFAULT_BLKSIZE
    raw = _number(options.get("blksize"), MIN_BLKSIZE, 10 ** MAX_DIGITS)
    if raw is not None:
        # Above the RFC maximum (or ours) the server may answer smaller (RFC 2348).
        blksize = min(raw, MAX_BLKSIZE, limits.max_blksize)
        reply["blksize"] = str(blksize)
    timeout = limits.timeout
    value = _number(options.get("timeout"), 1, 255)
    if value is not None:
        timeout = float(value)
        reply["timeout"] = str(value)
    if _number(options.get("tsize"), 0, 10 ** MAX_DIGITS) is not None:
        reply["tsize"] = str(size)
    windowsize = 1
    value = _number(options.get("windowsize"), 1, 65535)
    if value is not None:
        windowsize = min(value, limits.max_window)
        reply["windowsize"] = str(windowsize)
    return Negotiated(blksize, windowsize, timeout, reply)


class CompiledPump(Protocol):
    """The lock-step loop in compiled code, bound to a socket (native.Pump)."""
    def take_sent(self) -> int: ...     # packets sent since the last take

    def __call__(self, packets: bytearray, slot: int, count: int, tail: int, index: int,
                 block: int) -> int: ...


class ReadTransfer:
    """Sends one file to one peer; `done` and `outcome` tell how it ended."""

    def __init__(self, source: Source, send: Callable[[bytes | memoryview], object],
                 options: dict[str, str], now: float, limits: Limits = Limits()) -> None:
        self.source = source
        self.send = send
        # Optional: send_train(view, slot) sends consecutive packets of `slot` bytes
        # (the last may be shorter) laid end to end in `view`, in one go; False if it
        # cannot, and the engine goes back to one send per packet.
        self.send_train: Callable[[memoryview, int], bool] | None = None
        self.limits = limits
        neg = negotiate(options, source.size, limits)
        self.negotiated = neg
        self.blksize = bs = neg.blksize
        self.window = neg.windowsize
        self.timeout = neg.timeout
        self.max_interval = max(limits.max_timeout, neg.timeout)
        self.size = source.size
        self.last = self.size // bs + 1           # final block: shorter than bs, maybe empty
        # One buffer of packet slots (header + payload each): a batch of blocks is read
        # with one preadv straight into the slots and sent from there, no copies. A
        # batch holds up to BATCH_BLOCKS blocks, more than one window: in lock-step
        # one preadv then serves many ACKs (measured: a third of the engine's time
        # per block went to one preadv per block).
        self._slot = slot = 4 + bs
        self._slots = max(1, min(max(self.window, BATCH_BLOCKS), WINDOW_BUFFER // slot, self.last))
        self._buf = bytearray(slot * self._slots)
        self._whole = whole = memoryview(self._buf)
        self._packets = [whole[i * slot:(i + 1) * slot] for i in range(self._slots)]
        self._payloads = [p[4:] for p in self._packets]
        self._first = 0             # the batch in the slots: blocks _first.._first+_count-1
        self._count = 0
        self._batch = self._packets  # the batch's packet views (the final block's is shorter)
        self.base = 1            # lowest block not yet acknowledged (absolute number)
        self.next = 1            # next block to send
        self._rewind_guard = 0   # no gap-rewind until the client has acked past this
        self.awaiting_oack_ack = bool(neg.reply)
        self.done = False
        self.outcome = ""
        self.retries = 0
        self.interval = self.timeout
        self.deadline = now + self.interval
        # counters
        self.data_sent = 0
        self.retransmits = 0
        self.dup_acks = 0
        self.stray = 0           # ACKs of blocks never sent, malformed or unexpected packets
        self.bytes_sent = 0
        self.trains = 0          # windows sent in one go by send_train
        self._oack = encode_oack(neg.reply) if neg.reply else b""

    # --- start ---------------------------------------------------------------
    def start(self) -> None:
        if self.awaiting_oack_ack:
            self.send(self._oack)
        else:
            self._fill_window()

    # --- input ---------------------------------------------------------------
    def handle(self, data: bytes, now: float) -> None:
        if self.done:
            return
        if len(data) == 4 and data[1] == 4 and data[0] == 0:      # ACK: the hot path
            self.ack((data[2] << 8) | data[3], now)
            return
        try:
            packet = decode(data)
        except PacketError:
            self.stray += 1
            return
        if isinstance(packet, Error):
            self._finish(f"client error {packet.code}: {packet.message}"[:120])
        else:
            self.stray += 1

    def on_timer(self, now: float) -> None:
        if self.done or now < self.deadline:
            return
        if self.retries >= self.limits.retries:
            self._finish("timeout")
            return
        self.retries += 1
        self.retransmits += 1
        self.interval = min(self.interval * 2, self.max_interval)
        self.deadline = now + self.interval
        if self.awaiting_oack_ack:
            self.send(self._oack)
        else:
            self.next = self.base
            self._fill_window()

    # --- internals -----------------------------------------------------------
    def ack(self, wire: int, now: float) -> None:
        """An ACK of wire block number `wire` from the peer (the server's fast path calls this)."""
        if self.done:
            return
        if self.awaiting_oack_ack:
            if wire != 0:
                self.stray += 1
                return
            self.awaiting_oack_ack = False
        else:
            acked = self.base - 1
            block = acked + ((wire - acked) & 0xFFFF)   # the absolute block this ACK can mean
            if block == acked:
                self.dup_acks += 1                     # never answered: no SAS storm
                return
            if block >= self.next:
                self.stray += 1                        # a block we never sent
                return
            self.base = block + 1
            if self.base > self.last:
                self._finish("complete")
                return
            if block < self.next - 1 and self.base > self._rewind_guard:
                # The client stopped at a gap (RFC 7440): resend from there, once.
                self._rewind_guard = self.next - 1
                self.next = self.base
        self.retries = 0
        self.interval = self.timeout
        self.deadline = now + self.interval
        self._fill_window()

    def _fill_window(self) -> None:
        nxt = self.next
        if self.window == 1 and nxt <= self.last:
            i = nxt - self._first
            if 0 <= i < self._count:
                # Lock-step with the block read ahead: the hot path, one block per ACK.
                packet = self._batch[i]
                self.send(packet)
                self.next = nxt + 1
                self.data_sent += 1
                self.bytes_sent += len(packet) - 4
                if i + 1 == self._count and nxt < self.last:
                    self._load(nxt + 1)
                return
        end = min(self.base + self.window - 1, self.last)
        while self.next <= end and not self.done:
            count = min(end - self.next + 1, self._slots)
            self._send_blocks(self.next, count)
            self.next += count
        nxt = self.next
        window_end = nxt + min(self.window, self.last - nxt + 1)
        if not self.done and nxt <= self.last and window_end > self._first + self._count:
            # The next window is not in the buffer: read it now, while the ACK for the
            # one just sent is on its way (the kernel copied what was sent).
            self._load(nxt)

    def _load(self, first: int) -> bool:
        """Read a batch of blocks from `first` into the packet slots, headers included."""
        self._count = 0
        count = min(self._slots, self.last - first + 1)
        bs = self.blksize
        packets, payloads = self._packets, self._payloads
        tail = bs
        if first + count - 1 == self.last:              # the short final block
            tail = self.size - (self.last - 1) * bs
            packets = packets[:count - 1] + [packets[count - 1][:4 + tail]]
            payloads = payloads[:count - 1] + [payloads[count - 1][:tail]]
        elif count < self._slots:
            packets, payloads = packets[:count], payloads[:count]
        want = (count - 1) * bs + tail
        got = self.source.read_many(payloads, (first - 1) * bs, want) if want else 0
        if got != want:
            self._finish("file truncated")      # first: the send may raise (forked.py)
            self.send(encode_error(ERR_UNDEFINED, "file changed while being sent"))
            return False
        pack = _HEADER.pack_into
        for i in range(count):
            pack(packets[i], 0, 3, (first + i) & 0xFFFF)
        self._first, self._count, self._batch = first, count, packets
        return True

    def _send_blocks(self, first: int, count: int) -> None:
        """Send blocks first..first+count-1 from the buffer (read now unless read already)."""
        if not (self._first <= first and first + count <= self._first + self._count) and not self._load(first):
            return
        i = first - self._first
        batch = self._batch
        train = self.send_train
        if count > 1 and train is not None:
            slot = self._slot
            if train(self._whole[i * slot:(i + count - 1) * slot + len(batch[i + count - 1])], slot):
                self.trains += 1
            else:
                self.send_train = train = None
        if count == 1 or train is None:
            send = self.send
            for j in range(i, i + count):
                send(batch[j])
        self.data_sent += count
        self.bytes_sent += (count - 1) * self.blksize + len(batch[i + count - 1]) - 4

    # --- the lock-step pump (forked.py) ---------------------------------------
    def lockstep(self) -> bool:
        """In the window-1 steady state: one block sent and awaited, nothing else pending."""
        return self.window == 1 and not self.awaiting_oack_ack and not self.done and self.next == self.base + 1

    def run_lockstep(self, recv_into: Callable[[bytearray], int], buf: bytearray,
                     clock: Callable[[], float]) -> int:
        """Take in-order ACKs and send the next block for each, from the batch read ahead.

        For a transfer that has a process of its own and waits in recv (forked.py),
        when the compiled loop (run_compiled) is not built: while the client
        acknowledges each block in turn, this loop is all the Python that runs per
        block. Measured with 32 lock-step clients on 2 cores: ack() and its helpers
        cost about 150 bytecodes per block, this loop about 30, and the concurrent
        throughput went from 0.84 of tftpd-hpa's to 0.96-1.0.

        Returns the length of the first datagram it does not take, left in `buf`
        for ack()/handle(): anything but the awaited ACK, and the ACK of the batch's
        last block (ack() reads the next batch). `recv_into` must wait at most the
        current interval and raise BlockingIOError when it ran out: the deadline is
        then due. Whatever recv_into or send raise is re-raised, the state in order.
        """
        send = self.send
        first, batch = self._first, self._batch
        start = k = self.base                            # k: the block sent and awaited
        batch_last = first + self._count - 1
        hi, lo = (k >> 8) & 255, k & 255
        due = False
        try:
            while True:
                n = recv_into(buf)
                if n != 4 or buf[3] != lo or buf[2] != hi or buf[1] != 4 or buf[0] != 0 or k >= batch_last:
                    return n
                k += 1
                send(batch[k - first])
                hi, lo = (k >> 8) & 255, k & 255
        except BlockingIOError:
            due = True
            raise
        finally:
            self._pumped(k - start, clock)
            if due:
                self.deadline = float("-inf")

    def run_compiled(self, pump: CompiledPump, clock: Callable[[], float]) -> int:
        """run_lockstep with the loop in compiled code (native.Pump, lockstep.c).

        The pump moves the packets and returns the length of the datagram it left,
        or -errno; BlockingIOError (the deadline is then due) and the other
        OSErrors are raised here. What it sent is booked even when a signal
        handler raises right after it returns (SIGTERM in a transfer process).
        """
        count = self._count
        try:
            n = pump(self._buf, self._slot, count, len(self._batch[count - 1]),
                     self.base - self._first, self.base & 0xFFFF)
        finally:
            self._pumped(pump.take_sent(), clock)
        if n < 0:
            if n == -errno.EAGAIN:                       # SO_RCVTIMEO ran out
                self.deadline = float("-inf")
            raise OSError(-n, os.strerror(-n))          # BlockingIOError for EAGAIN
        return n

    def _pumped(self, sent: int, clock: Callable[[], float]) -> None:
        """Book `sent` blocks the pump sent, each for the ACK of the one before."""
        if not sent:
            return
        k = self.base + sent
        self.base, self.next = k, k + 1
        self.data_sent += sent
        tail = len(self._batch[k - self._first]) - 4      # short only for the file's final block
        self.bytes_sent += (sent - 1) * self.blksize + tail
        self.retries = 0
        self.interval = self.timeout
        self.deadline = clock() + self.interval   # late by less than the time since the ACK

    def abort(self, outcome: str) -> None:
        """End the transfer from outside (server shutdown, a newer request from the same port)."""
        self._finish(outcome)

    def _finish(self, outcome: str) -> None:
        self.done = True
        self.outcome = outcome
        self.deadline = float("inf")


class BytesSource:
    """A file already in memory (rendered per-host configs, netascii conversions)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def read_into(self, view: memoryview, offset: int) -> int:
        chunk = self.data[offset:offset + len(view)]
        view[:len(chunk)] = chunk
        return len(chunk)

    def read_many(self, views: list[memoryview], offset: int, want: int) -> int:
        total = 0
        for view in views:
            n = self.read_into(view, offset + total)
            total += n
            if n < len(view):
                break
        return total


class FileSource:
    """An open file descriptor read with pread (no shared file offset, no copies beyond one)."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size

    def read_many(self, views: list[memoryview], offset: int, want: int) -> int:
        """Scatter-read consecutive blocks with one preadv (falls back per view when short)."""
        total = os.preadv(self.fd, views, offset)
        if total == want:
            return total
        done = 0
        for view in views:              # short read: finish view by view from where it stopped
            if total >= done + len(view):
                done += len(view)
                continue
            part = view[total - done:]
            n = self.read_into(part, offset + total)
            total += n
            done += len(view)
            if n < len(part):
                break
        return total

    def read_into(self, view: memoryview, offset: int) -> int:
        total = os.preadv(self.fd, [view], offset)
        while 0 < total < len(view):     # pread may come up short before EOF; at EOF it returns 0
            n = os.preadv(self.fd, [view[total:]], offset + total)
            if n <= 0:
                break
            total += n
        return total


def to_netascii(data: bytes) -> bytes:
    """RFC 764 line ends: LF -> CR LF, a bare CR -> CR NUL."""
    return data.replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")

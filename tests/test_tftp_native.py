"""The compiled lock-step loop (lockstep.c via native.Pump) over real sockets.

It must move exactly what the Python loop (ReadTransfer.run_lockstep) moves and
leave the engine in the same state on every way out: the first datagram that
is not the awaited ACK, a timeout, a signal. The transfer process's own loop
(forked.serve) runs both against a client on the other end of a socket pair.
"""
import hashlib
import mmap
import os
import multiprocessing
import signal
import socket
import struct
import time

import pytest

from services.tftp import forked, native
from services.tftp import packet as P
from services.tftp.engine import BytesSource, Limits, ReadTransfer

BLKSIZE = 8


def ack(n):
    return struct.pack("!HH", 4, n & 0xFFFF)


def test_the_compiled_loop_is_built():
    ok, why = native.available()
    assert ok, f"the compiled TFTP loop does not load ({why}): run ./setup.sh --install-only"


@pytest.fixture
def pair():
    server, client = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    yield server, client
    server.close()
    client.close()


def started(server: socket.socket, data: bytes) -> ReadTransfer:
    """A transfer past its OACK: block 1 sent and awaited, in lock-step."""
    t = ReadTransfer(BytesSource(data), server.send, {"blksize": str(BLKSIZE)}, now=0.0,
                     limits=Limits(timeout=1.0, max_timeout=4.0, retries=3))
    t.start()
    t.handle(ack(0), 0.0)
    assert t.lockstep()
    return t


def received(client: socket.socket) -> list[int]:
    blocks = []
    client.setblocking(False)
    try:
        while True:
            blocks.append(getattr(P.decode(client.recv(100)), "block", "oack"))
    except BlockingIOError:
        return blocks
    finally:
        client.setblocking(True)


def test_the_compiled_loop_returns_the_first_datagram_that_is_not_the_awaited_ack(pair):
    server, client = pair
    t = started(server, bytes(range(256)) * 40)
    assert isinstance(P.decode(client.recv(100)), P.OAck) and received(client) == [1]
    for datagram in (ack(1), ack(2), ack(2)):                  # two in order, then a duplicate
        client.send(datagram)
    buf = bytearray(100)
    pump = native.Pump(server.fileno(), buf)
    assert t.run_compiled(pump, lambda: 7.0) == 4 and bytes(buf[:4]) == ack(2)
    assert (t.base, t.next, t.data_sent, t.bytes_sent) == (3, 4, 3, 24)
    assert t.deadline == 7.0 + t.interval
    assert received(client) == [2, 3]
    t.handle(bytes(buf[:4]), 7.0)
    assert t.dup_acks == 1 and received(client) == []          # never answered


def test_the_compiled_loop_leaves_the_batch_end_to_the_engine(pair):
    server, client = pair
    data = bytes(BLKSIZE * 300)                                # more than one batch
    t = started(server, data)
    received(client)
    batch = t._count
    for block in range(1, batch + 2):
        client.send(ack(block))
    buf = bytearray(100)
    n = t.run_compiled(native.Pump(server.fileno(), buf), lambda: 1.0)
    assert n == 4 and bytes(buf[:4]) == ack(batch)             # the batch's last block's ACK
    assert t.base == batch and received(client) == list(range(2, batch + 1))


def two_acks_then_silence(server: socket.socket, client: socket.socket, timeout: float) -> ReadTransfer:
    """A transfer in lock-step whose loop will find the ACKs of blocks 1 and 2, then
    nothing for `timeout` seconds (its SO_RCVTIMEO)."""
    t = started(server, bytes(BLKSIZE * 100))
    received(client)
    forked._set_timeout(server, timeout)
    client.send(ack(1))
    client.send(ack(2))
    return t


def test_a_timeout_in_the_compiled_loop_makes_the_retransmission_due(pair):
    server, client = pair
    t = two_acks_then_silence(server, client, 0.05)
    with pytest.raises(BlockingIOError):
        t.run_compiled(native.Pump(server.fileno(), bytearray(100)), lambda: 3.0)
    assert (t.base, t.next) == (3, 4)
    received(client)
    t.on_timer(3.5)
    assert received(client) == [3] and t.retransmits == 1


class Alarm(Exception):
    pass


def test_a_signal_ends_the_compiled_loop_with_what_it_sent_booked(pair):
    """SIGTERM aborts a transfer process while it waits in the loop's recv: the
    handler's exception comes out, and the blocks sent before it are booked."""
    server, client = pair
    t = two_acks_then_silence(server, client, 5.0)

    def alarm(_signum, _frame):
        raise Alarm

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    began = time.monotonic()
    try:
        with pytest.raises(Alarm):
            t.run_compiled(native.Pump(server.fileno(), bytearray(100)), lambda: 1.0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert time.monotonic() - began < 2.0
    assert (t.base, t.next, t.data_sent) == (3, 4, 3)
    assert received(client) == [2, 3]


def lockstep_client(sock: socket.socket, result) -> None:
    """ACKs every DATA block in order until the short final block; sends back
    the SHA-256 of what it got (a process of its own: no GIL shared with the server)."""
    got = hashlib.sha256()
    expected = 1
    while True:
        packet = P.decode(sock.recv(100))
        if isinstance(packet, P.OAck):
            sock.send(ack(0))
            continue
        if packet.block == expected & 0xFFFF:
            got.update(packet.payload)
            expected += 1
        sock.send(ack(packet.block))
        if len(packet.payload) < BLKSIZE:
            result.send(got.hexdigest())
            return


@pytest.mark.parametrize("loop", ["compiled", "python"])
def test_a_transfer_process_loop_moves_70001_blocks_the_same_either_way(pair, monkeypatch, loop):
    server, client = pair
    data = hashlib.sha256(b"pump").digest() * (70000 * BLKSIZE // 32 + 1)
    data = data[:70000 * BLKSIZE + 5]
    pumped = []
    if loop == "python":
        monkeypatch.setattr(native, "available", lambda: (False, "test: the Python loop"))
        real = ReadTransfer.run_lockstep

        def counted(self, *args):
            before = self.base
            try:
                return real(self, *args)
            finally:
                pumped.append(self.base - before)
        monkeypatch.setattr(ReadTransfer, "run_lockstep", counted)
    else:
        class Counted(native.Pump):
            def take_sent(self):
                pumped.append(super().take_sent())
                return pumped[-1]
        monkeypatch.setattr(native, "Pump", Counted)
    t = ReadTransfer(BytesSource(data), server.send, {"blksize": str(BLKSIZE)}, now=time.monotonic(),
                     limits=Limits(timeout=2.0, max_timeout=4.0, retries=3))
    mine, theirs = multiprocessing.Pipe()
    peer = multiprocessing.get_context("fork").Process(target=lockstep_client, args=(client, theirs))
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})       # one core: no idle-core wake-ups (3x faster here)
    peer.start()
    try:
        spin = mmap.mmap(-1, 1)                                # not a lone transfer: no spinning
        forked.serve(server, t, lambda: None, spin)
        assert mine.poll(10), "the client did not get the whole file"
        assert mine.recv() == hashlib.sha256(data).hexdigest() and t.outcome == "complete"
    finally:
        os.sched_setaffinity(0, cpus)
        peer.kill()
        peer.join()
    assert (t.data_sent, t.bytes_sent, t.retransmits, t.dup_acks, t.stray) == (70001, len(data), 0, 0, 0)
    assert sum(pumped) > 70001 - 70001 // 100, f"the {loop} loop sent only {sum(pumped)} blocks"



def test_status_says_when_transfer_processes_run_the_loop_in_python(tmp_path, monkeypatch):
    from support.tftp import ServerThread
    server = ServerThread(tmp_path, workers=1)
    try:
        assert server.server.health().detail == ""
        monkeypatch.setattr(native, "available", lambda: (False, "_lockstep.so is not built"))
        assert server.server.health().detail == "lock-step loop in Python: _lockstep.so is not built"
    finally:
        server.stop()

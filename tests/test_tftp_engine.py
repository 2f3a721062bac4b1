"""The pure transfer engine driven by a fake transport and a fake clock."""
import hashlib
import struct

import pytest

from services.tftp import packet as P
from services.tftp.engine import BytesSource, Limits, ReadTransfer, negotiate


class Wire:
    """Collects what the engine sends (copied: the engine reuses its buffer)."""

    def __init__(self):
        self.sent: list[bytes] = []

    def __call__(self, data):
        self.sent.append(bytes(data))

    def take(self):
        out, self.sent = self.sent, []
        return [P.decode(d) for d in out]


def ack(n):
    return struct.pack("!HH", 4, n & 0xFFFF)


def start(data: bytes, options=None, limits=Limits(timeout=1.0, max_timeout=4.0, retries=3)):
    wire = Wire()
    t = ReadTransfer(BytesSource(data), wire, options or {}, now=0.0, limits=limits)
    t.start()
    return t, wire


def run_client(data: bytes, options=None):
    """A perfect client: ACKs every window end; returns the bytes received and packets seen."""
    t, wire = start(data, options)
    got = bytearray()
    expected = 1
    packets = 0
    now = 0.0
    while not t.done:
        last = None
        for pkt in wire.take():
            packets += 1
            if isinstance(pkt, P.OAck):
                last = 0
            else:
                assert isinstance(pkt, P.Data)
                assert pkt.block == expected & 0xFFFF
                got += pkt.payload
                expected += 1
                last = pkt.block
        assert last is not None, "engine went silent"
        now += 0.001
        t.handle(ack(last), now)
    return bytes(got), packets, t


@pytest.mark.parametrize("value,expect", [
    ("0", None), ("7", None), ("8", "8"), ("512", "512"), ("65464", "65464"), ("65465", "65464"),
    ("-1", None), ("abc", None), ("1e3", None), (" 512", None), ("512 ", None), ("1" * 20, None),
    ("", None), ("\u0661\u0662", None),
])
def test_blksize_validation(value, expect):
    assert negotiate({"blksize": value}, 10).reply.get("blksize") == expect


@pytest.mark.parametrize("value,expect", [("0", None), ("1", "1"), ("255", "255"), ("256", None), ("-5", None)])
def test_timeout_validation(value, expect):
    neg = negotiate({"timeout": value}, 10)
    assert neg.reply.get("timeout") == expect
    if expect:
        assert neg.timeout == float(expect)


def test_tsize_windowsize_and_unknown_options():
    assert negotiate({"tsize": "0"}, 1234).reply == {"tsize": "1234"}
    assert negotiate({"tsize": "abc"}, 1234).reply == {}
    assert negotiate({"windowsize": "0"}, 1).reply == {}
    assert negotiate({"windowsize": "16"}, 1).windowsize == 16
    assert negotiate({"windowsize": "60000"}, 1, Limits(max_window=64)).reply == {"windowsize": "64"}
    assert negotiate({"multicast": "", "rollover": "0", "utimeout": "5"}, 1).reply == {}


@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, 1024, 5000])
def test_sizes_zero_exact_multiple_and_odd(size):
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    got, packets, t = run_client(data)
    assert got == data and t.outcome == "complete"
    assert packets == size // 512 + 1          # an exact multiple ends with an empty block


def test_oack_then_data_with_options():
    data = b"x" * 3000
    t, wire = start(data, {"blksize": "1000", "tsize": "0", "bogus": "1"})
    assert wire.take() == [P.OAck({"blksize": "1000", "tsize": "3000"})]
    t.handle(ack(0), 0.1)
    assert [p.block for p in wire.take()] == [1]
    got, _, t = run_client(data, {"blksize": "1000", "windowsize": "2"})
    assert got == data


def test_rollover_past_65535_blocks():
    data = hashlib.sha256(b"seed").digest() * (70000 * 8 // 32 + 1)
    data = data[:70000 * 8 + 3]
    got, packets, t = run_client(data, {"blksize": "8"})
    assert got == data and packets == 1 + 70001    # OACK + blocks
    assert t.outcome == "complete"


def test_rollover_windowed():
    data = bytes(8 * 66000)
    got, _, t = run_client(data, {"blksize": "8", "windowsize": "16"})
    assert got == data


def test_window_sends_a_window_per_ack():
    t, wire = start(b"a" * 512 * 40, {"windowsize": "16"})
    wire.take()
    t.handle(ack(0), 0.0)
    assert [p.block for p in wire.take()] == list(range(1, 17))
    t.handle(ack(16), 0.0)
    assert [p.block for p in wire.take()] == list(range(17, 33))


def test_window_gap_restarts_after_the_gap_once():
    t, wire = start(b"a" * 512 * 100, {"windowsize": "8"})
    wire.take()
    t.handle(ack(0), 0.0)
    wire.take()                                    # 1..8
    t.handle(ack(3), 0.0)                          # the client missed 4
    assert [p.block for p in wire.take()] == list(range(4, 12))
    # A client that ACKs every block cannot make us resend a window per ACK.
    for n in (4, 5, 6, 7):
        t.handle(ack(n), 0.0)
    sent = [p.block for p in wire.take()]
    assert sent == [12, 13, 14, 15]


def test_duplicate_acks_send_nothing():
    t, wire = start(b"a" * 512 * 10)
    assert [p.block for p in wire.take()] == [1]
    t.handle(ack(1), 0.0)
    assert [p.block for p in wire.take()] == [2]
    for _ in range(50):
        t.handle(ack(1), 0.0)
    assert wire.take() == [] and t.dup_acks == 50


def test_ack_zero_and_future_block_ignored():
    t, wire = start(b"a" * 512 * 10)
    wire.take()
    t.handle(ack(0), 0.0)
    t.handle(ack(5), 0.0)
    t.handle(ack(40000), 0.0)
    assert wire.take() == [] and not t.done and t.stray == 2


def test_retransmission_backs_off_and_is_bounded():
    t, wire = start(b"a" * 2000)
    wire.take()
    times = []
    now = 0.0
    while not t.done:
        now = t.deadline
        t.on_timer(now)
        sent = wire.take()
        if sent:
            assert [p.block for p in sent] == [1]
            times.append(now)
    assert t.outcome == "timeout"
    assert times == [1.0, 3.0, 7.0]                # 1 s, then doubling, capped at 4
    assert t.retransmits == 3


def test_early_timer_does_nothing():
    t, wire = start(b"a" * 2000)
    wire.take()
    t.on_timer(0.5)
    assert wire.take() == []


def test_ack_resets_the_backoff():
    t, wire = start(b"a" * 5000)
    wire.take()
    t.on_timer(1.0)
    t.on_timer(3.0)
    t.handle(ack(1), 3.5)
    assert t.deadline == 4.5 and t.retries == 0


def test_client_error_ends_session():
    t, wire = start(b"a" * 5000)
    wire.take()
    t.handle(P.Error(0, "user abort").encode(), 0.1)
    assert t.done and t.outcome.startswith("client error 0")
    t.handle(ack(1), 0.2)
    assert wire.take() == []


def test_client_error_to_oack_ends_session():
    t, wire = start(b"a" * 5000, {"blksize": "1024"})
    wire.take()
    t.handle(P.Error(8, "options refused").encode(), 0.1)
    assert t.done and "8" in t.outcome


def test_malformed_from_peer_is_ignored():
    t, wire = start(b"a" * 5000)
    wire.take()
    for junk in (b"", b"\0", b"\0\4\0", b"\0\3\0\1hello", b"\xff\xff\0\0", b"\0\1x\0octet\0"):
        t.handle(junk, 0.1)
    assert wire.take() == [] and not t.done and t.stray == 6


class Shrinking(BytesSource):
    def __init__(self, data, cut_after):
        super().__init__(data)
        self.cut_after = cut_after
        self.reads = 0

    def read_into(self, view, offset):
        self.reads += 1
        if self.reads > self.cut_after:
            self.data = self.data[:offset]           # truncated on disk while being sent
        return super().read_into(view, offset)


def test_file_truncated_while_sent_ends_with_error():
    wire = Wire()
    t = ReadTransfer(Shrinking(b"a" * 5000, 3), wire, {}, now=0.0)
    t.start()
    for n in range(1, 10):
        if t.done:
            break
        t.handle(ack(n), 0.0)
    assert t.done and t.outcome == "file truncated"
    last = wire.take()[-1]
    assert isinstance(last, P.Error)


from hypothesis import given, settings, strategies as st


@settings(max_examples=150, deadline=None)
@given(window=st.sampled_from([1, 2, 8, 16]),
       events=st.lists(st.one_of(st.integers(0, 65535).map(lambda n: ("ack", n)),
                                 st.just(("timer", 0)),
                                 st.binary(max_size=8).filter(lambda b: b[:2] != b"\0\4").map(lambda b: ("junk", b))), max_size=60))
def test_no_input_makes_the_engine_send_more_than_a_window(window, events):
    """Whatever a peer sends, one input never produces more than one window of DATA."""
    data = bytes(512 * 50 + 3)
    opts = {"windowsize": str(window)} if window > 1 else {}
    t, wire = start(data, opts, limits=Limits(timeout=1.0, max_timeout=2.0, retries=5))
    wire.take()
    if window > 1:
        t.handle(ack(0), 0.0)
        assert len(wire.take()) == window
    now = 0.0
    for kind, value in events:
        if t.done:
            break
        if kind == "ack":
            was_dup = value == (t.base - 1) & 0xFFFF
            t.handle(ack(value), now)
            sent = wire.take()
            assert len(sent) <= window
            if was_dup:
                assert sent == []
        elif kind == "timer":
            now = t.deadline
            t.on_timer(now)
            assert len(wire.take()) <= window
        else:
            t.handle(value, now)
            assert wire.take() == []


class Train(Wire):
    """A socket with UDP GSO: cuts each train into datagrams of `slot` bytes; may refuse."""

    def __init__(self, accept: bool = True):
        super().__init__()
        self.accept, self.trains = accept, 0

    def train(self, view, slot):
        if not self.accept:
            return False
        data = bytes(view)
        self.sent += [data[i:i + slot] for i in range(0, len(data), slot)]
        self.trains += 1
        return True


@pytest.mark.parametrize("accept", [True, False])
@pytest.mark.parametrize("size", [0, 512 * 16, 512 * 16 + 7, 100_000])
def test_windows_go_as_trains_or_one_by_one(accept, size):
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    wire = Train(accept)
    t = ReadTransfer(BytesSource(data), wire, {"windowsize": "16"}, now=0.0)
    t.send_train = wire.train
    t.start()
    got, expected, now = bytearray(), 1, 0.0
    while not t.done:
        last = None
        for pkt in wire.take():
            if isinstance(pkt, P.Data):
                assert pkt.block == expected & 0xFFFF
                got += pkt.payload
                expected += 1
            last = pkt.block if isinstance(pkt, P.Data) else 0
        assert last is not None, "engine went silent"
        now += 0.001
        t.handle(ack(last), now)
    assert bytes(got) == data
    assert (t.trains > 0) == (accept and size >= 1024), "a window of two or more blocks is one train"
    assert wire.trains == t.trains
    if not accept and size >= 1024:
        assert t.send_train is None, "after a refusal the engine stops asking"


class Client:
    """For the lock-step pump: recv_into answers with the ACK of the last DATA sent, or a script."""

    def __init__(self, wire: Wire, script=()):
        self.wire, self.script, self.got, self.calls = wire, list(script), bytearray(), 0

    def __call__(self, buf: bytearray) -> int:
        self.calls += 1
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, BaseException):
                raise step
            buf[:len(step)] = step
            return len(step)
        packets = [p for p in self.wire.take() if isinstance(p, P.Data)]
        assert packets, "the pump waited for an ACK of nothing"
        for pkt in packets:
            self.got += pkt.payload
        buf[:4] = ack(packets[-1].block)
        return 4


def pump_client(t: ReadTransfer, wire: Wire, client: Client, clock=lambda: 5.0) -> int:
    """Drive a transfer as forked.serve does; returns how many datagrams the general path took."""
    buf = bytearray(100)
    general = 0
    while not t.done:
        if t.lockstep():
            try:
                n = t.run_lockstep(client, buf, clock)
            except BlockingIOError:
                t.on_timer(clock())
                continue
        else:
            n = client(buf)
        general += 1
        t.handle(bytes(buf[:n]), clock())
    return general


def test_the_lockstep_pump_sends_what_the_general_path_does_past_65535_blocks():
    data = hashlib.sha256(b"pump").digest() * (70000 * 8 // 32 + 1)
    data = data[:70000 * 8 + 5]
    t, wire = start(data, {"blksize": "8"})
    client = Client(wire, [ack(0)])                        # the OACK's
    general = pump_client(t, wire, client)
    assert bytes(client.got) == data and t.outcome == "complete"
    assert t.data_sent == 70001 and t.bytes_sent == len(data) and t.retransmits == 0
    assert general < 70001 // 60, "the pump left the blocks to the general path"


def test_the_lockstep_pump_returns_the_first_datagram_that_is_not_the_awaited_ack():
    data = bytes(range(256)) * 40
    t, wire = start(data, {"blksize": "8"})
    wire.take()                                            # the OACK
    t.handle(ack(0), 0.0)
    assert t.lockstep()
    client = Client(wire)
    buf = bytearray(100)
    client.script = [ack(1), ack(2), ack(2)]               # two in order, then a duplicate
    assert t.run_lockstep(client, buf, lambda: 7.0) == 4 and bytes(buf[:4]) == ack(2)
    assert (t.base, t.next, t.data_sent, t.bytes_sent) == (3, 4, 3, 24)
    assert t.deadline == 7.0 + t.interval
    assert [p.block for p in wire.take()] == [1, 2, 3]
    t.handle(bytes(buf[:4]), 7.0)
    assert t.dup_acks == 1 and wire.take() == []           # never answered


def test_a_timeout_in_the_lockstep_pump_makes_the_retransmission_due():
    data = bytes(8 * 100)
    t, wire = start(data, {"blksize": "8"})
    t.handle(ack(0), 0.0)
    client = Client(wire)
    client.script = [ack(1), ack(2), BlockingIOError()]
    with pytest.raises(BlockingIOError):
        t.run_lockstep(client, bytearray(100), lambda: 3.0)
    assert (t.base, t.next) == (3, 4)
    wire.take()
    t.on_timer(3.5)
    assert [p.block for p in wire.take()] == [3] and t.retransmits == 1

"""A bounded fuzz campaign against the live appliance: mutated DHCP, TFTP and DNS datagrams.

`si up` runs in a lab namespace; hypothesis mutates recorded real packets
(an iPXE DISCOVER, a PXE ROM's RRQ, a resolver's query) into batches that a
sender in another namespace fires at it. After every batch a real client is
answered (a scapy DORA, curl over TFTP, dig), and the service's counters
account for every datagram of the batch: none vanished unnamed. The
namespaces have no route to any other network, so replies to fuzzed relay
or client addresses go nowhere.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dnslib import EDNS0, DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.lab.configs import lab_toml
from appliance.lab.netns import Lab
from support.needs import require_programs, require_root
from services.dhcp.policy import REASONS

HERE = Path(__file__).parent
SI = [sys.executable, "-m", "appliance.cli"]
BATCH = 40
CAMPAIGN = settings(max_examples=5, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))

DHCP_SEED = bytes.fromhex((HERE / "data" / "dhcp-ipxe-bios-discover.hex").read_text().split()[0])
TFTP_SEED = b"\x00\x01pxelinux.0\x00octet\x00blksize\x001468\x00tsize\x000\x00"
_query = DNSRecord.question("www1.lab.example")
_query.add_ar(EDNS0(udp_len=4096))
DNS_SEED = _query.pack()


def mutated(seed: bytes) -> st.SearchStrategy[bytes]:
    """A recorded packet with bytes changed, cut short, grown, or replaced by noise."""
    def flip(changes):
        out = bytearray(seed)
        for where, value in changes:
            out[where % len(out)] = value
        return bytes(out)
    return st.one_of(
        st.lists(st.tuples(st.integers(0, len(seed) - 1), st.integers(0, 255)), min_size=1, max_size=8).map(flip),
        st.integers(0, len(seed) - 1).map(lambda n: seed[:n]),
        st.tuples(st.integers(0, len(seed)), st.binary(min_size=1, max_size=64)).map(
            lambda t: seed[:t[0]] + t[1] + seed[t[0]:]),
        st.binary(max_size=600),
    )


SENDER = """
import socket, sys
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for line in open(path):
    s.sendto(bytes.fromhex(line.strip()), (host, port))
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    require_root()
    require_programs("dig", "curl")
    state = tmp_path_factory.mktemp("fuzz")
    with Lab() as lab:
        app = lab.namespace("app")
        lab.bridge(app, "br0", "10.77.0.1/24")
        fuzzer, cli = lab.namespace("fuzz"), lab.namespace("cli")
        lab.veth(fuzzer, "eth0", app, "vfuzz", addr_a="10.77.0.60/24", bridge_b="br0")
        lab.veth(cli, "eth0", app, "vcli", bridge_b="br0")
        cfg = state / "appliance.toml"
        cfg.write_text(lab_toml(state, services=("dhcp", "tftp", "dns", "http")))
        boot = state / "state" / "tftpboot"
        boot.mkdir(parents=True)
        (boot / "hello.txt").write_text("hello from the appliance\n")
        (state / "sender.py").write_text(SENDER)
        log = open(state / "si.log", "wb")
        proc = lab.popen(app, *SI, "up", "--config", str(cfg), stdout=log, stderr=subprocess.STDOUT)
        lab.fuzz = {"app": app, "fuzzer": fuzzer, "cli": cli, "state": state, "proc": proc}
        deadline = time.time() + 30
        while time.time() < deadline and not (_health(lab) or {}).get("ok"):
            assert proc.poll() is None, (state / "si.log").read_text()[-3000:]
            time.sleep(0.3)
        yield lab
        log.close()


def _health(lab) -> dict | None:
    out = lab.run(lab.fuzz["app"], "curl", "-s", "--max-time", "2", "http://127.0.0.1:8080/api/health",
                  check=False)
    return json.loads(out.stdout) if out.returncode == 0 and out.stdout else None


def _counters(lab, service: str) -> dict:
    return next(s for s in _health(lab)["services"] if s["name"] == service)["counters"]


def _fire(lab, port: int, batch: list[bytes]) -> None:
    path = lab.fuzz["state"] / "batch.hex"
    path.write_text("".join(d.hex() + "\n" for d in batch if d))
    lab.run(lab.fuzz["fuzzer"], sys.executable, str(lab.fuzz["state"] / "sender.py"), "10.77.0.1", str(port),
            str(path))


def _fire_and_account(lab, service: str, port: int, batch: list[bytes], received: str, outcomes) -> None:
    """Send a batch; every datagram is received and lands in exactly one outcome counter."""
    sent = [d for d in batch if d]
    before = _counters(lab, service)
    _fire(lab, port, sent)
    deadline = time.time() + 5
    while True:
        after = _counters(lab, service)
        if after.get(received, 0) - before.get(received, 0) >= len(sent) or time.time() > deadline:
            break
        time.sleep(0.1)
    moved = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
    assert moved.get(received, 0) == len(sent), moved
    assert sum(moved.get(k, 0) for k in outcomes) == len(sent), moved


DHCP_OUTCOMES = ("dropped_malformed", "policy_errors", "ignored_own_probe", *REASONS)
TFTP_OUTCOMES = ("malformed", "not_a_request", "requests")
DNS_OUTCOMES = ("refused_clients", "malformed", "badvers", "refused_transfers", "answered", "forward_overload",
                "forwarded", "refused")


@CAMPAIGN
@given(batch=st.lists(mutated(DHCP_SEED), min_size=BATCH, max_size=BATCH))
def test_dhcp_survives_mutated_discovers(live, batch):
    _fire_and_account(live, "dhcp", 67, batch, "received", DHCP_OUTCOMES)
    assert _counters(live, "dhcp").get("policy_errors", 0) == 0
    got = live.run(live.fuzz["cli"], sys.executable, str(HERE / "support" / "dhcp_client.py"), "dora", "--mac",
                   "52:54:00:f0:00:01", timeout=60, check=False)
    assert got.returncode == 0 and json.loads(got.stdout.splitlines()[-1])["ack"], got.stderr[-2000:]


@CAMPAIGN
@given(batch=st.lists(mutated(TFTP_SEED), min_size=BATCH, max_size=BATCH))
def test_tftp_survives_mutated_requests(live, batch):
    _fire_and_account(live, "tftp", 69, batch, "datagrams", TFTP_OUTCOMES)
    got = live.run(live.fuzz["fuzzer"], "curl", "-s", "--max-time", "10", "tftp://10.77.0.1/hello.txt",
                   check=False)
    assert got.stdout == "hello from the appliance\n", got.stderr


@CAMPAIGN
@given(batch=st.lists(mutated(DNS_SEED), min_size=BATCH, max_size=BATCH))
def test_dns_survives_mutated_queries(live, batch):
    _fire_and_account(live, "dns", 53, batch, "queries", DNS_OUTCOMES)
    got = live.run(live.fuzz["fuzzer"], "dig", "@10.77.0.1", "+tries=2", "+time=2", "+short",
                   "lab.example", "SOA", check=False)
    assert "lab.example." in got.stdout

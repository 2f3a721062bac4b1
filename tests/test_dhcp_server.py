"""The DHCP service over real sockets in lab namespaces, with scapy and dnsmasq as peers.

Topology: a bridge in its own namespace; the appliance (si up, DHCP only) in
`srv` as 10.77.0.1/24; a client namespace `cli`; a `rogue` namespace for a
competing dnsmasq. Nothing here touches the host's own network.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.lab.netns import Lab
from appliance.store import Store
from appliance.store.records import Host

HERE = Path(__file__).parent
PY = sys.executable
CLIENT = str(HERE / "dhcp_client.py")
IPXE_BIOS = ["--opt", "93:0000", "--opt", "60:" + b"PXEClient:Arch:00000:UNDI:002001".hex(),
             "--opt", "77:" + b"iPXE".hex()]
PXE_BIOS = ["--opt", "93:0000", "--opt", "60:" + b"PXEClient:Arch:00000:UNDI:002001".hex()]


@pytest.fixture(scope="module")
def lab():
    if os.geteuid() != 0:
        pytest.fail("these tests need root to build network namespaces")
    with Lab() as lab:
        sw = lab.namespace("dsw")
        lab.bridge(sw, "br0")
        srv, cli, rogue = lab.namespace("dsrv"), lab.namespace("dcli"), lab.namespace("drog")
        lab.veth(srv, "eth0", sw, "p-srv", addr_a="10.77.0.1/24", bridge_b="br0")
        lab.veth(cli, "eth0", sw, "p-cli", bridge_b="br0")
        lab.veth(rogue, "eth0", sw, "p-rog", addr_a="10.77.0.3/24", bridge_b="br0")
        lab.run(srv, "ip", "route", "add", "10.88.0.0/24", "via", "10.77.0.2")
        lab.names = {"sw": sw, "srv": srv, "cli": cli, "rogue": rogue}
        yield lab


class Appliance:
    """`si up` with DHCP (and HTTP for /api/health) in the server namespace."""

    def __init__(self, lab: Lab, state: Path, dhcp: dict | None = None, extra: str = "") -> None:
        self.lab, self.state = lab, state
        state.mkdir(parents=True, exist_ok=True)
        self.config = state / "appliance.toml"
        dhcp = {"probe_seconds": 0.5, **(dhcp or {})}
        dhcp_lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in dhcp.items())
        self.config.write_text(f"""
interface = "eth0"
address = "10.77.0.1"
domain = "lab.example"
state_dir = "{state}"
log_dir = "{state}/log"
[services]
dhcp = true
http = true
tftp = false
dns = false
rsyncd = false
[[subnet]]
network = "10.77.0.0/24"
pools = ["10.77.0.100-10.77.0.250"]
gateway = "10.77.0.1"
dns_servers = ["10.77.0.1"]
lease_time = 600
[[subnet]]
network = "10.88.0.0/24"
pools = ["10.88.0.50-10.88.0.99"]
gateway = "10.88.0.1"
[dhcp]
{dhcp_lines}
[http]
port = 8080
{extra}
""")
        self.proc: subprocess.Popen | None = None
        self.log = state / "si.log"

    def store(self) -> Store:
        return Store(self.state / "appliance.db")

    def start(self, wait: bool = True) -> "Appliance":
        self.logf = open(self.log, "ab")
        self.proc = self.lab.popen(self.lab.names["srv"], PY, "-m", "appliance.cli", "up",
                                   "--config", str(self.config), stdout=self.logf, stderr=subprocess.STDOUT,
                                   cwd=str(HERE.parent))
        if wait:
            self.wait_port(67)
        return self

    def wait_port(self, port: int, timeout: float = 20) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            out = self.lab.run(self.lab.names["srv"], "ss", "-Hlun", f"sport = :{port}").stdout
            if out.strip():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"DHCP never listened on {port}; log:\n{self.log.read_text()[-3000:]}")

    def health(self) -> dict:
        out = self.lab.run(self.lab.names["srv"], "curl", "-s", "http://127.0.0.1:8080/api/health",
                           check=False).stdout
        status = json.loads(out)
        return next(s for s in status["services"] if s["name"] == "dhcp")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


@pytest.fixture
def appliance(lab, tmp_path):
    made = []

    def make(**kw) -> Appliance:
        a = Appliance(lab, tmp_path / f"state{len(made)}", **kw)
        made.append(a)
        return a
    yield make
    for a in made:
        a.stop()


def client(lab, *args, ns="cli", timeout=60) -> dict:
    out = lab.run(lab.names[ns], PY, CLIENT, *args, timeout=timeout, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_dora_ipxe_gets_address_and_script(lab, appliance):
    a = appliance().start()
    got = client(lab, "dora", "--mac", "52:54:00:12:34:56", *IPXE_BIOS)
    offer, ack = got["offer"], got["ack"]
    assert offer and offer["options"]["message-type"] == 2
    assert offer["yiaddr"].startswith("10.77.0.") and offer["siaddr"] == "10.77.0.1"
    assert offer["file"] == "http://10.77.0.1:8080/boot/ipxe/01-52-54-00-12-34-56.ipxe"
    assert ack and ack["options"]["message-type"] == 5 and ack["yiaddr"] == offer["yiaddr"]
    assert ack["options"]["subnet_mask"] == "255.255.255.0" and ack["options"]["router"] == "10.77.0.1"
    assert ack["options"]["lease_time"] == 600 and ack["options"]["224"] == "\x0aM\x00\x01"
    leases = {l.mac: l.ip for l in a.store().leases()}
    assert leases["52:54:00:12:34:56"] == ack["yiaddr"]
    health = a.health()
    assert health["counters"]["offered"] >= 1 and health["counters"]["acked"] >= 1
    # A plain BIOS PXE ROM (no iPXE) is chainloaded into iPXE.
    plain = client(lab, "dora", "--mac", "52:54:00:12:34:57", *PXE_BIOS, "--discover-only")
    assert plain["offer"]["file"] == "undionly.kpxe"


def test_reservation_from_hosts_table(lab, appliance):
    a = appliance()
    store = a.store()
    store.upsert_host(Host("node07", mac="52:54:00:00:00:07", ip="10.77.0.7", image="img"))
    store.close()
    a.start()
    got = client(lab, "dora", "--mac", "52:54:00:00:00:07", *PXE_BIOS)
    assert got["ack"]["yiaddr"] == "10.77.0.7"
    assert got["ack"]["options"]["hostname"] == "node07"
    assert got["ack"]["options"]["domain"] == "lab.example"


def test_relay_giaddr_gets_relayed_subnet_unicast(lab, appliance):
    appliance().start()
    cli = lab.names["cli"]
    lab.run(cli, "ip", "addr", "add", "10.77.0.2/24", "dev", "eth0")
    lab.run(cli, "ip", "addr", "add", "10.88.0.1/24", "dev", "eth0")
    try:
        got = client(lab, "udp", "--bind", "10.88.0.1", "--sport", "67", "--giaddr", "10.88.0.1",
                     "--server", "10.77.0.1", "--mac", "52:54:00:00:88:01", "--type", "discover")
        (reply,) = got["replies"]
        assert reply["source"] == ["10.77.0.1", 67]
        assert reply["yiaddr"] == "10.88.0.50" and reply["giaddr"] == "10.88.0.1"
        assert reply["options"]["router"] == "10.88.0.1"
    finally:
        lab.run(cli, "ip", "addr", "flush", "dev", "eth0")


def test_unknown_mac_enrolled_with_local_boot(lab, appliance):
    a = appliance(dhcp={"enrol": True}).start()
    got = client(lab, "dora", "--mac", "52:54:00:00:0e:01", *PXE_BIOS)
    assert got["ack"]["file"] == "undionly.kpxe"
    host = a.store().host_by_mac("52:54:00:00:0e:01")
    assert host is not None and host.netboot == "local" and host.hostname == "node-525400000e01"


def test_unknown_mac_not_enrolled_by_default(lab, appliance):
    a = appliance().start()
    got = client(lab, "dora", "--mac", "52:54:00:00:0e:02", *PXE_BIOS)
    assert got["ack"]["yiaddr"].startswith("10.77.0.")
    assert a.store().host_by_mac("52:54:00:00:0e:02") is None


def test_proxy_mode_answers_pxe_only_without_address(lab, appliance):
    a = appliance(dhcp={"mode": "proxy"}).start()
    a.wait_port(4011)
    plain = client(lab, "discover", "--mac", "52:54:00:00:0f:01", "--timeout", "1.5")
    assert plain["offers"] == []
    pxe = client(lab, "discover", "--mac", "52:54:00:00:0f:02", "--timeout", "1.5", *PXE_BIOS)
    (offer,) = pxe["offers"]
    assert offer["yiaddr"] == "0.0.0.0" and offer["file"] == "undionly.kpxe"
    assert offer["options"]["vendor_class_id"] == "PXEClient" and "lease_time" not in offer["options"]
    cli = lab.names["cli"]
    lab.run(cli, "ip", "addr", "add", "10.77.0.60/24", "dev", "eth0")
    try:
        got = client(lab, "udp", "--bind", "10.77.0.60", "--sport", "68", "--dport", "4011",
                     "--ciaddr", "10.77.0.60", "--mac", "52:54:00:00:0f:02", "--type", "request",
                     *IPXE_BIOS)
        (ack,) = got["replies"]
        assert ack["options"]["message-type"] == 5 and ack["yiaddr"] == "0.0.0.0"
        assert ack["file"] == "http://10.77.0.1:8080/boot/ipxe/01-52-54-00-00-0f-02.ipxe"
    finally:
        lab.run(cli, "ip", "addr", "flush", "dev", "eth0")
    assert a.store().leases() == []


def test_rogue_server_refused(lab, appliance, tmp_path):
    if not shutil.which("dnsmasq"):
        pytest.fail("dnsmasq (package dnsmasq-base) is needed as the rogue server")
    rogue = lab.popen(lab.names["rogue"], "dnsmasq", "--no-daemon", "--port=0", "--interface=eth0",
                      "--bind-interfaces", "--no-ping", "--dhcp-range=10.77.0.20,10.77.0.30,1h",
                      f"--dhcp-leasefile={tmp_path}/rogue.leases", f"--pid-file={tmp_path}/rogue.pid",
                      "--conf-file=/dev/null", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        a = appliance(dhcp={"probe_seconds": 1.0}).start(wait=False)
        deadline = time.time() + 15
        while time.time() < deadline and "another DHCP server answers" not in a.log.read_text():
            time.sleep(0.2)
        assert "another DHCP server answers on eth0: 10.77.0.3" in a.log.read_text()
        assert not lab.run(lab.names["srv"], "ss", "-Hlun", "sport = :67").stdout.strip()
    finally:
        rogue.terminate()
        rogue.wait(5)


def test_bad_datagrams_counted_and_service_goes_on(lab, appliance):
    a = appliance().start()
    cli = lab.names["cli"]
    lab.run(cli, "ip", "addr", "add", "10.77.0.2/24", "dev", "eth0")
    try:
        script = (
            "import socket,os\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            "for n in (0,1,239,243,300,600):\n"
            "    s.sendto(os.urandom(n),('10.77.0.1',67))\n"
            "from scapy.all import IP,UDP,Raw,send\n"
            "send(IP(dst='10.77.0.1')/UDP(sport=68,dport=67,len=400)/Raw(b'x'*300),verbose=0)\n")
        lab.run(cli, PY, "-c", script)
    finally:
        lab.run(cli, "ip", "addr", "flush", "dev", "eth0")
    got = client(lab, "dora", "--mac", "52:54:00:00:0b:01")
    assert got["ack"] is not None
    counters = a.health()["counters"]
    assert counters["dropped_malformed"] >= 5 and counters["acked"] >= 1


def test_kill_9_under_load_loses_no_acked_lease(lab, appliance, tmp_path):
    a = appliance().start()
    cli = lab.names["cli"]
    acks = tmp_path / "acks.txt"
    lab.run(cli, "ip", "addr", "add", "10.77.0.2/24", "dev", "eth0")
    try:
        load = lab.popen(cli, PY, CLIENT, "load", "--giaddr", "10.77.0.2", "--server", "10.77.0.1",
                         "--seconds", "6", "--concurrency", "16", "--out", str(acks),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 15
        while time.time() < deadline and (not acks.exists() or len(acks.read_text().splitlines()) < 30):
            time.sleep(0.05)
        os.kill(a.proc.pid, signal.SIGKILL)
        a.proc.wait()
        out, err = load.communicate(timeout=30)
        acked = [line.split() for line in acks.read_text().splitlines() if line.strip()]
        assert len(acked) >= 30, err.decode()[-2000:]
        # Read the database exactly as the killed process left it, then restart on it.
        db = sqlite3.connect(str(a.state / "appliance.db"))
        stored = dict(db.execute("SELECT mac, ip FROM leases WHERE state='bound'").fetchall())
        db.close()
        missing = [(mac, ip) for mac, ip in acked if stored.get(mac) != ip]
        assert not missing, f"{len(missing)} ACKed leases lost, e.g. {missing[:3]}"
        a.start()
        (mac, ip) = acked[0]
        got = client(lab, "udp", "--bind", "10.77.0.2", "--sport", "67", "--giaddr", "10.77.0.2",
                     "--server", "10.77.0.1", "--mac", mac, "--type", "discover")
        assert got["replies"][0]["yiaddr"] == ip     # the restarted server knows the lease
    finally:
        lab.run(cli, "ip", "addr", "flush", "dev", "eth0")

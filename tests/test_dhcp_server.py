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
import time
from pathlib import Path

import pytest

from appliance.lab.netns import Lab
from appliance.store.records import Host
from support.dhcp_lab import PY, Appliance

HERE = Path(__file__).parent
CLIENT = str(HERE / "support" / "dhcp_client.py")
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


REPROBE = r'''
import asyncio, json, sys, subprocess, time
from pathlib import Path
from appliance.config import load
from appliance.service import Context
from appliance.store import Store
from services.dhcp.server import DhcpService

async def main():
    cfg = load(Path(sys.argv[1]))
    service = DhcpService(Context(cfg, Store(cfg.db_path)))
    service.reprobe_seconds = 1.0
    ready = asyncio.Event()
    task = asyncio.create_task(service.serve(ready.set))
    await asyncio.wait_for(ready.wait(), 20)
    before = service.health().ok
    open(sys.argv[2], "w").write("serving")          # the test now starts the rogue
    for _ in range(100):
        await asyncio.sleep(0.1)
        if not service.health().ok:
            break
    health = service.health()
    task.cancel()
    print(json.dumps({"before": before, "after": health.ok, "detail": health.detail,
                      "events": [e["kind"] for e in service.ctx.store.events()]}))

asyncio.run(main())
'''


def test_reprobe_raises_alarm_when_a_rogue_appears(lab, appliance, tmp_path):
    a = appliance(dhcp={"probe_seconds": 0.5})
    flag = tmp_path / "serving"
    proc = lab.popen(lab.names["srv"], PY, "-c", REPROBE, str(a.config), str(flag),
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(HERE.parent))
    deadline = time.time() + 30
    while not flag.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    rogue = lab.popen(lab.names["rogue"], "dnsmasq", "--no-daemon", "--port=0", "--interface=eth0",
                      "--bind-interfaces", "--no-ping", "--dhcp-range=10.77.0.20,10.77.0.30,1h",
                      f"--dhcp-leasefile={tmp_path}/rogue.leases", f"--pid-file={tmp_path}/rogue.pid",
                      "--conf-file=/dev/null", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        rogue.terminate()
        rogue.wait(5)
    result = json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else pytest.fail(err.decode()[-2000:])
    assert result["before"] is True and result["after"] is False
    assert "another DHCP server answers: 10.77.0.3" in result["detail"]
    assert "rogue-server" in result["events"]


def test_router_solicitation_gets_a_no_router_advertisement(lab, appliance):
    """PXE firmware waits ~13 s for IPv6 unless a router answers; ours says "no router here"."""
    a = appliance().start()
    mac = lab.run(lab.names["srv"], "cat", "/sys/class/net/eth0/address").stdout.strip()
    lab.run(lab.names["cli"], "sysctl", "-qw", "net.ipv6.conf.eth0.accept_ra=2")
    got = None
    for _ in range(3):       # the bridge's port may still be learning; RS is sent once per try
        got = json.loads(lab.run(lab.names["cli"], PY, str(HERE / "support" / "ra_client.py"), "2",
                                 timeout=30).stdout.strip().splitlines()[-1])
        if got:
            break
    assert got is not None, f"no router advertisement answered; log:\n{a.log.read_text()[-2000:]}"
    assert got["hlim"] == 255 and got["src"].startswith("fe80:")
    assert (got["routerlifetime"], got["M"], got["O"], got["prefixes"]) == (0, 0, 0, 0), got
    assert got["lladdr"] == mac
    assert "default" not in lab.run(lab.names["cli"], "ip", "-6", "route").stdout, "it must not become a router"
    assert a.health()["counters"]["router_adverts_sent"] >= 1


def test_router_solicitations_left_alone_when_switched_off(lab, appliance):
    a = appliance(dhcp={"answer_router_solicitations": False}).start()
    got = json.loads(lab.run(lab.names["cli"], PY, str(HERE / "support" / "ra_client.py"), "2",
                             timeout=30).stdout.strip().splitlines()[-1])
    assert got is None and a.health()["counters"].get("router_adverts_sent", 0) == 0


def test_a_pool_address_someone_uses_by_hand_is_set_aside(lab, appliance):
    """Ping-check: the first pool address answers a ping (configured by hand), so it is not offered."""
    rogue = lab.names["rogue"]
    lab.run(rogue, "ip", "addr", "add", "10.77.0.100/24", "dev", "eth0")
    try:
        a = appliance().start()
        got = client(lab, "dora", "--mac", "52:54:00:12:34:70", *PXE_BIOS)
        assert got["ack"]["yiaddr"] != "10.77.0.100" and got["ack"]["yiaddr"].startswith("10.77.0.1")
        counters = a.health()["counters"]
        assert counters["ping_conflicts"] == 1, counters
        assert "10.77.0.100" not in {l.ip for l in a.store().leases() if l.state == "bound"}
    finally:
        lab.run(rogue, "ip", "addr", "del", "10.77.0.100/24", "dev", "eth0", check=False)


def test_ping_check_off_offers_unprobed(lab, appliance):
    """ping_timeout = 0: the answering first pool address is offered all the same (no probe was sent)."""
    rogue = lab.names["rogue"]
    lab.run(rogue, "ip", "addr", "add", "10.77.0.100/24", "dev", "eth0")
    try:
        a = appliance(dhcp={"ping_timeout": 0}).start()
        got = client(lab, "dora", "--mac", "52:54:00:12:34:71", *PXE_BIOS)
        assert got["ack"]["yiaddr"] == "10.77.0.100"
        assert "ping_conflicts" not in a.health()["counters"]
    finally:
        lab.run(rogue, "ip", "addr", "del", "10.77.0.100/24", "dev", "eth0", check=False)


def test_a_full_or_read_only_state_disk_withholds_acks_and_loses_nothing(lab, appliance, tmp_path):
    """The state directory's file system full, then read-only (ext4 after an error, errors=remount-ro),
    during lease writes: no ACK goes out for a lease that could not be stored, the appliance goes on
    answering, and the leases already stored are intact; with room again, DHCP works as before."""
    state = tmp_path / "state0"           # the first appliance() of this test lives here
    state.mkdir()
    disk = tmp_path / "state.ext4"
    subprocess.run(["truncate", "-s", "48M", str(disk)], check=True)
    subprocess.run(["mkfs.ext4", "-q", str(disk)], check=True)
    subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(disk), str(state)], check=True)
    try:
        a = appliance(dhcp={"ping_timeout": 0}).start()
        first = client(lab, "dora", "--mac", "52:54:00:0f:00:01", *PXE_BIOS)["ack"]
        assert first, "DHCP works before the disk fills"
        with open(state / "filler", "wb", buffering=0) as filler:    # fill the file system to the last block
            for chunk in (1 << 20, 4096, 512):
                try:
                    while True:
                        filler.write(b"\0" * chunk)
                except OSError:
                    pass
        acked = {"52:54:00:0f:00:01": first["yiaddr"]}

        def until_unacked(prefix: str) -> str:
            """DORAs with new MACs until one gets no ACK (room left in SQLite's files runs out)."""
            for i in range(12):
                mac = f"{prefix}:{i:02x}"
                got = client(lab, "dora", "--mac", mac, *PXE_BIOS, "--timeout", "2")
                assert got["offer"], "offers need no storage: they still come"
                if got["ack"] is None:
                    return mac
                acked[mac] = got["ack"]["yiaddr"]
            raise AssertionError("every lease was ACKed on a full disk")

        refused = until_unacked("52:54:00:0f:01")
        assert a.health()["counters"]["store_failed"] >= 1
        (state / "filler").unlink()
        second = client(lab, "dora", "--mac", refused, *PXE_BIOS)["ack"]
        assert second, "room again: DHCP stores and ACKs"
        acked[refused] = second["yiaddr"]
        device = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(state)], capture_output=True, text=True,
                                check=True).stdout.strip()
        Path(f"/sys/fs/ext4/{Path(device).name}/trigger_fs_error").write_text("si fault test\n")
        never = until_unacked("52:54:00:0f:02")
        assert a.health()["counters"]["store_failed"] >= 2 and a.proc.poll() is None, "it goes on answering"
        a.stop()
        saved = tmp_path / "saved"                       # read the database off the read-only disk
        saved.mkdir()
        for f in state.glob("appliance.db*"):
            shutil.copy(f, saved / f.name)
        from appliance.store import Store
        leases = {l.mac: l.ip for l in Store(saved / "appliance.db").leases()}
        assert leases == acked, "every ACKed lease stored, as ACKed; none that was not ACKed"
        assert never not in leases
    finally:
        for made in list(getattr(appliance, "made", [])):
            made.stop()
        subprocess.run(["umount", "-l", str(state)], check=False)

"""Fleets end to end: QEMU machines PXE-boot at once and install one image by BitTorrent
(three machines, one swarm) and by multicast (two machines, one udpcast session), then
boot their disks. The transport comes from the host's group in the appliance's [fleet]
table; every install still ends with the rsync pass, which must find almost nothing to do.
"""
from __future__ import annotations

import json
import re
import time

INSTALL_TIMEOUT = 900
BOOT_TIMEOUT = 300
BOOTED = r"SI-GOLDEN-BOOTED hostname=(\S+) ip=(\S+)"
MIB = 2**20


def stream_ready(lab, image: str, timeout: float = 120) -> dict:
    """The operator's check before powering a fleet on: the image's stream is packed (the fleet
    service packs a newly captured version in the background)."""
    deadline = time.time() + timeout
    while True:
        stream = json.loads(lab.si("images", "show", image, "--json").stdout)["fleet_stream"]
        if stream["state"] == "ready" or time.time() > deadline:
            assert stream["state"] == "ready", stream
            return stream
        time.sleep(1)


def install_together(lab, hostnames, group, first_mac):
    """Enrol the hosts in `group`, power all on at once; each one's finished run and boot line."""
    stream_ready(lab, "golden_v1")
    machines = []
    for i, hostname in enumerate(hostnames):
        lab.si("hosts", "set", hostname, "--group", group)
        machines.append(lab.machine(hostname, f"{first_mac}{i + 1:x}", firmware="bios", disk_size="1G"))
    try:
        for m in machines:
            m.guest.start()
        t = time.time()
        runs = {m.hostname: lab.wait_installed(m.hostname, INSTALL_TIMEOUT) for m in machines}
        booted = {m.hostname: m.guest.wait_for(BOOTED, BOOT_TIMEOUT) for m in machines}
        lab.timings[f"{group}: {len(machines)} installs+boots"] = time.time() - t
        return runs, booted
    finally:
        for m in machines:
            m.guest.stop()


def repaired(log: str) -> int:
    """Bytes the rsync pass after the stream moved (the master script's summary line)."""
    found = re.search(r"then rsync: (\d+) bytes repaired from the appliance", log)
    assert found, log[-3000:]
    return int(found.group(1))


def test_three_machines_install_one_swarm_and_boot(fleet_install_lab):
    lab = fleet_install_lab
    hosts = lab.addclients("golden_v1", "bt", 3, start=1)
    runs, booted = install_together(lab, hosts, "swarm", "52:54:00:77:02:1")
    for host in hosts:
        log = runs[host]["log"]
        assert "transport bittorrent: swarm of golden_v1:" in log, log[-3000:]
        assert "falling back" not in log, log[-3000:]
        assert repaired(log) < MIB, "the stream was right: the rsync pass should move almost nothing"
        assert booted[host].group(1) == host
    status = lab.api("/api/fleet")
    assert status["tracker"] and any(s.startswith("golden_v1:") for s in status["seeding"]), status


def test_two_machines_install_one_multicast_session_and_boot(fleet_install_lab):
    lab = fleet_install_lab
    hosts = lab.addclients("golden_v1", "mc", 2, start=5)
    runs, booted = install_together(lab, hosts, "mcast", "52:54:00:77:02:5")
    for host in hosts:
        log = runs[host]["log"]
        assert "transport multicast: session on port" in log, log[-3000:]
        assert "falling back" not in log, log[-3000:]
        assert repaired(log) < MIB
        assert booted[host].group(1) == host
    sessions = lab.api("/api/fleet")["sessions"]
    assert [s["receivers"] for s in sessions] == [2], sessions

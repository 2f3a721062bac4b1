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


def fleet_installs(lab, basename: str, count: int, start: int, group: str, first_mac: str, says: str) -> None:
    """`count` new hosts of `group` install together; each log says `says`, none fell back, the
    rsync pass after the stream moved almost nothing, and each booted its disk as itself."""
    hosts = lab.addclients("golden_v1", basename, count, start=start)
    runs, booted = install_together(lab, hosts, group, first_mac)
    for host in hosts:
        log = runs[host]["log"]
        assert says in log and "falling back" not in log, log[-3000:]
        assert repaired(log) < MIB, "the stream was right: the rsync pass should move almost nothing"
        assert booted[host].group(1) == host


def test_three_machines_install_one_swarm_and_boot(fleet_install_lab):
    fleet_installs(fleet_install_lab, "bt", 3, 1, "swarm", "52:54:00:77:02:1",
                   "transport bittorrent: swarm of golden_v1:")
    status = fleet_install_lab.api("/api/fleet")
    assert status["tracker"] and any(s.startswith("golden_v1:") for s in status["seeding"]), status


def test_two_machines_install_one_multicast_session_and_boot(fleet_install_lab):
    fleet_installs(fleet_install_lab, "mc", 2, 5, "mcast", "52:54:00:77:02:5",
                   "transport multicast: session on port")
    sessions = fleet_install_lab.api("/api/fleet")["sessions"]
    assert [s["receivers"] for s in sessions] == [2], sessions

"""Installing several machines at once, for real (appliance/lab/fleet_lab.py: `si up` and
machines in namespaces on one switch, each running the master script's image pull), with
Debian's engines: opentracker, aria2c and ctorrent, udp-sender and udp-receiver, GNU tar, zstd.

Every machine must end byte-identical to the image (owners, modes, hard links, xattrs)
whatever the transport, and its log must say which transport ran.
"""
from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

from appliance.lab.fleet_lab import ENGINES, FleetLab, Pull
from services.fleet import pack

from support.autoinstall import MIB
from support.needs import require_programs

IMAGE = "fleetimg"


def make_tree(root: Path) -> Path:
    """About 12 MiB of files that compress like a system's, with what a tar must keep."""
    rng_dir = root / "usr/lib/random"
    rng_dir.mkdir(parents=True)
    for i in range(6):
        (rng_dir / f"blob{i}.bin").write_bytes(os.urandom(MIB))
    text = root / "usr/share/doc"
    text.mkdir(parents=True)
    for i in range(200):
        (text / f"page{i}.txt").write_text(f"page {i}\n" + "the quick brown fox jumps over the lazy dog\n" * 700)
    os.link(rng_dir / "blob0.bin", root / "usr/lib/blob0-link.bin")
    os.symlink("random/blob1.bin", root / "usr/lib/blob1-symlink")
    (root / "home/user").mkdir(parents=True)
    (root / "home/user/notes").write_text("n\n")
    os.chown(root / "home/user/notes", 1234, 2345)
    os.chmod(root / "usr/lib/random/blob2.bin", 0o4750)
    os.setxattr(root / "usr/lib/random/blob3.bin", "user.si-test", b"kept")
    with open(root / "usr/lib/sparse.img", "wb") as f:
        f.truncate(64 * MIB)
        f.write(b"start")
    (root / "etc").mkdir()
    (root / "etc/fstab").write_text("/dev/sda1 / ext4 defaults 0 1\n")
    return root


def fleet_lab(lab, tmp: Path, n: int, fleet: dict) -> FleetLab:
    require_programs(*ENGINES)
    return FleetLab(lab, tmp, make_tree(tmp / "image"), image=IMAGE, hosts=n, fleet=fleet)


def assert_identical(fleet: FleetLab, result: Pull) -> None:
    # the image in place is what counts (a machine still seeding was ended by the test)
    assert result.rc == 0 or result.pulled_at is not None, f"the pull failed:\n{result.out}\n{result.log}"
    assert fleet.differences(result.target) == [], result.log
    notes = result.target / "home/user/notes"
    assert os.stat(notes).st_uid == 1234
    assert os.getxattr(result.target / "usr/lib/random/blob3.bin", "user.si-test") == b"kept"
    assert os.stat(result.target / "usr/lib/blob0-link.bin").st_ino == \
        os.stat(result.target / "usr/lib/random/blob0.bin").st_ino
    if result.rc == 0:
        assert not (result.target / ".si-stream").exists(), "the downloaded stream was left on the disk"


def repaired_bytes(log: str) -> int:
    line = next(l for l in log.splitlines() if "bytes repaired from the appliance" in l)
    return int(line.split("then rsync: ")[1].split()[0])


def split_of(log: str) -> tuple[int, int]:
    """(bytes from the appliance, bytes from peers) from a machine's BitTorrent log line."""
    found = re.search(r"bytes of stream: at least (\d+) from the appliance, the rest \((\d+)\) from peers", log)
    assert found, log
    return int(found.group(1)), int(found.group(2))


def test_three_machines_install_from_one_swarm(lab, tmp_path):
    require_programs(*ENGINES, "tc")
    # 50 Mbit/s links: the swarm takes seconds, long enough for the appliance to count its
    # seeder's connections (sampled) before they close
    fleet = FleetLab(lab, tmp_path, make_tree(tmp_path / "image"), image=IMAGE, hosts=3, link_mbit=50,
                     fleet={"transport": "bittorrent", "seed_seconds": 1, "join_timeout": 20})
    fleet.packed()
    results = fleet.install(range(3))
    for r in results:
        assert_identical(fleet, r)
        assert "transport bittorrent: " in r.log and "bytes of stream unpacked" in r.log, r.log
        assert "falling back" not in r.log, r.log
        # The stream was right: the rsync pass moved file lists, not the image's 12 MiB.
        assert repaired_bytes(r.log) < MIB, r.log
    # Each machine was told what came from the appliance (the kernel's count of the seeder's
    # connections to it, a lower bound) and from peers; the appliance sent every piece at
    # least once, and most of that was counted.
    stream = fleet.packed()["bytes"]
    split = [split_of(r.log) for r in results]
    assert all(a + p == stream for a, p in split), split
    assert sum(a for a, _ in split) >= 0.5 * stream, split
    # The run's bytes, as the monitor shows them, are the stream's and then the repair's.
    for r in results:
        reported = [l.split() for l in (tmp_path / f"calls{r.index}").read_text().splitlines()
                    if l.startswith("si-progress ") and len(l.split()) == 4]
        assert reported[-1][1] == "repair" and int(reported[-1][3]) >= stream, reported[-3:]
    time.sleep(3)   # the seeder's next readout
    status = fleet.api("/api/fleet")
    assert status["tracker"] and f"{IMAGE}:1" in status["seeding"], status
    # The appliance gave the swarm at least one copy and less than all three.
    assert stream * 0.9 <= status["seeder_uploaded_bytes"][f"{IMAGE}:1"] < 3 * stream, status


def test_a_peer_killed_midway_does_not_stall_the_others(lab, tmp_path):
    """Links of 10 Mbit/s make the swarm take seconds; one machine is killed (its pull and its
    BitTorrent client) at a fifth of its download: the others finish from the appliance and
    each other, by BitTorrent, and the appliance still seeds."""
    require_programs(*ENGINES, "tc")
    fleet = FleetLab(lab, tmp_path, make_tree(tmp_path / "image"), image=IMAGE, hosts=3, link_mbit=10,
                     fleet={"transport": "bittorrent", "seed_seconds": 1, "join_timeout": 20})
    fleet.packed()
    procs = fleet.start(range(3))
    victim = dict(procs)[0]

    def progress_of_victim() -> int:
        calls = tmp_path / "calls0"
        lines = calls.read_text().splitlines() if calls.exists() else []
        got = [int(l.split()[2]) for l in lines if l.startswith("si-progress bittorrent ")]
        return max(got, default=0)
    deadline = time.time() + 60
    while progress_of_victim() < 27 and time.time() < deadline:   # 15 + 60 * 20 %
        assert victim.poll() is None, "the victim ended before it could be killed"
        time.sleep(0.05)
    assert progress_of_victim() >= 27, "the victim's download never got going"
    os.killpg(victim.pid, signal.SIGKILL)
    results = fleet.finish(procs, timeout=120)
    assert results[0].rc != 0 and results[0].pulled_at is None
    for r in results[1:]:
        assert_identical(fleet, r)
        assert "falling back" not in r.log and repaired_bytes(r.log) < MIB, r.log
    assert f"{IMAGE}:1" in fleet.api("/api/fleet")["seeding"]


def test_pieces_the_appliance_serves_damaged_are_fetched_again_from_a_peer(lab, tmp_path):
    """Every third piece of the appliance's copy is damaged on its disk (its seeder serves what
    it reads). Alone with it, a machine's client throws those pieces away (their hashes are
    wrong), stops making progress and falls back to rsync. With a peer that has the good
    pieces, a machine gets them again from that peer: it installs by BitTorrent, byte-identical,
    with nothing to repair."""
    fleet = fleet_lab(lab, tmp_path, 3, {"transport": "bittorrent", "seed_seconds": 120, "join_timeout": 8})
    packed = fleet.packed()
    stream = next((tmp_path / "state/packs" / IMAGE).glob("*/image.tar.zst"))
    good = stream.read_bytes()
    piece = 1 << pack.piece_exponent(packed["bytes"])
    bad = bytearray(good)
    for offset in range(piece // 2, len(bad), 3 * piece):
        bad[offset:offset + 4096] = os.urandom(4096)
    stream.write_bytes(bytes(bad))
    [alone] = fleet.finish(fleet.start([0]), timeout=120, stop_when_pulled=True)
    assert "transport bittorrent failed, falling back to rsync: no progress from the swarm" in alone.log, alone.log
    assert_identical(fleet, alone)

    stream.write_bytes(good)                      # a machine that got the good pieces, seeding
    peer = fleet.start([1])
    deadline = time.time() + 60
    while not (tmp_path / "si-tmp1/pulled").exists():
        assert time.time() < deadline and peer[0][1].poll() is None, "the peer did not install"
        time.sleep(0.2)
    stream.write_bytes(bytes(bad))
    [second] = fleet.finish(fleet.start([2]), timeout=120, stop_when_pulled=True)
    fleet.finish(peer, timeout=5, stop_when_pulled=True)
    assert "falling back" not in second.log and repaired_bytes(second.log) < MIB, second.log
    assert_identical(fleet, second)


def test_two_machines_install_from_one_multicast_session(lab, tmp_path):
    fleet = fleet_lab(lab, tmp_path, 2, {"transport": "multicast", "min_receivers": 2, "min_wait": 0,
                                     "max_wait": 20, "join_timeout": 20})
    fleet.packed()
    results = fleet.install(range(2))
    for r in results:
        assert_identical(fleet, r)
        assert "transport multicast: session on port 9000" in r.log, r.log
        assert "falling back" not in r.log and repaired_bytes(r.log) < MIB, r.log
    sessions = fleet.api("/api/fleet")["sessions"]
    assert [(s["port"], s["receivers"]) for s in sessions] == [(9000, 2)], sessions


def test_a_damaged_multicast_stream_falls_back_to_rsync_and_ends_identical(lab, tmp_path):
    fleet = fleet_lab(lab, tmp_path, 1, {"transport": "multicast", "min_wait": 0, "max_wait": 5, "join_timeout": 20})
    fleet.packed()
    stream = next((tmp_path / "state/packs" / IMAGE).glob("*/image.tar.zst"))
    data = bytearray(stream.read_bytes())
    data[len(data) // 2:len(data) // 2 + 4096] = os.urandom(4096)   # what a bad switch might do
    stream.write_bytes(bytes(data))
    [r] = fleet.install([0])
    assert "transport multicast failed, falling back to rsync" in r.log, r.log
    assert "transport rsync (fallback from multicast)" in r.log, r.log
    assert_identical(fleet, r)


def children(pid: int) -> dict[int, str]:
    """{pid: program} of a process's children."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found[int(child)] = Path(f"/proc/{child}/comm").read_text().strip()
    return found


def test_a_machine_that_cannot_join_the_swarm_falls_back_to_rsync(lab, tmp_path):
    fleet = fleet_lab(lab, tmp_path, 2, {"transport": "bittorrent", "seed_seconds": 0, "join_timeout": 4})
    fleet.packed()
    [first] = fleet.install([0])
    assert "transport bittorrent: " in first.log and "falling back" not in first.log, first.log
    engines = {pid: name for pid, name in children(fleet.proc.pid).items() if name in ("opentracker", "aria2c")}
    assert sorted(engines.values()) == ["aria2c", "opentracker"], children(fleet.proc.pid)
    for pid in engines:   # a hung tracker and seeder: the swarm accepts no one
        os.kill(pid, signal.SIGSTOP)
    try:
        started = time.time()
        [second] = fleet.install([1])
    finally:
        for pid in engines:
            os.kill(pid, signal.SIGCONT)
    assert "transport bittorrent failed, falling back to rsync: no progress from the swarm in 4 s" \
        in second.log, second.log
    assert_identical(fleet, second)
    assert time.time() - started < 60


def test_a_machine_whose_image_is_not_packed_yet_is_told_rsync_and_why(lab, tmp_path):
    fleet = fleet_lab(lab, tmp_path, 1, {"transport": "rsync", "images": {IMAGE: "rsync"}})
    [r] = fleet.install([0], {"SI_TRANSPORT": "multicast"})
    assert_identical(fleet, r)
    assert "transport rsync: multicast not possible now: fleetimg:1 is being packed" in r.log, r.log
    fleet.packed()   # asking started the packing


def test_a_version_committed_by_another_process_is_packed_before_anyone_asks(lab, tmp_path):
    """getimage commits from its own process, which tells the appliance nothing: the fleet service
    notices the new current version itself and packs it in the background."""
    from appliance.config import load
    from appliance.store import Store
    fleet = fleet_lab(lab, tmp_path, 1, {"transport": "multicast"})
    fleet.packed()
    tree2 = tmp_path / "image2"
    make_tree(tree2)
    (tree2 / "etc/motd").write_text("version 2\n")
    store = Store(load(fleet.config).db_path)
    store.add_image_version(IMAGE, 2, str(tree2))
    store.finish_image_version(IMAGE, 2, 1)

    def version2_ready():
        packs = (fleet.api("/api/fleet") or {}).get("packs", [])
        return any(p["version"] == 2 and p["state"] == "ready" for p in packs)
    fleet.wait_for(version2_ready, f"version 2 was not packed: {fleet.api('/api/fleet')}", 30)
    assert fleet.api("/api/fleet")["counters"]["plans"] == 0, "packed before any machine asked"

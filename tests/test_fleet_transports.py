"""Installing several machines at once, for real: `si up` (HTTP, the rsync daemon, the fleet)
in a namespace, installing machines in namespaces of their own on one bridge, each running
the image pull of the rendered master script under busybox sh (the same functions the
initrd runs), with Debian's engines: opentracker, aria2c and ctorrent, udp-sender and
udp-receiver, GNU tar and zstd.

Every machine must end byte-identical to the image (owners, modes, hard links, xattrs)
whatever the transport, and its log must say which transport ran.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.autoinstall import write_master_script
from appliance.config import load
from appliance.lab.configs import lab_toml
from appliance.store import Store
from appliance.store.records import Host

from autoinstall_helpers import MIB, write_stubs
from needs import require_programs

SI = [sys.executable, "-m", "appliance.cli"]
SERVER = "10.77.0.1"
IMAGE = "fleetimg"
ENGINES = ("busybox", "rsync", "curl", "tar", "zstd", "mktorrent", "opentracker", "aria2c", "ctorrent",
           "udp-sender", "udp-receiver")


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


class Fleet:
    """The appliance and its installing machines."""

    def __init__(self, lab, tmp: Path, n: int, fleet: dict) -> None:
        require_programs(*ENGINES)
        self.lab, self.tmp = lab, tmp
        self.app = lab.namespace("app")
        lab.bridge(self.app, "br0", f"{SERVER}/24")
        lab.run(self.app, "ip", "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
        self.clients = []
        for i in range(n):
            ns = lab.namespace(f"m{i}")
            lab.veth(ns, "eth0", self.app, f"v{i}", addr_a=f"10.77.0.{50 + i}/24", bridge_b="br0")
            self.clients.append(ns)
        self.config = tmp / "appliance.toml"
        self.config.write_text(lab_toml(tmp, services=("http", "rsyncd", "fleet"), fleet=fleet))
        cfg = load(self.config)
        self.image = make_tree(tmp / "image")
        store = Store(cfg.db_path)
        store.add_image_version(IMAGE, 1, str(self.image), ip_method="static_dhcp", post_install="reboot")
        store.finish_image_version(IMAGE, 1, 1)
        for i in range(n):
            store.upsert_host(Host(f"node{i}", ip=f"10.77.0.{50 + i}", image=IMAGE))
        self.master = write_master_script(cfg, store, IMAGE)
        self.stubs = write_stubs(tmp / "stubs")
        self.proc = lab.popen(self.app, *SI, "up", "--config", str(self.config),
                              stdout=subprocess.DEVNULL, stderr=open(tmp / "si-up.err", "w"))
        self.wait_for(lambda: (self.api("/api/health") or {}).get("ok"), "si up did not come up", 30)

    def api(self, path: str):
        out = self.lab.run(self.app, "curl", "-sf", "--max-time", "3", f"http://{SERVER}:8080{path}", check=False)
        return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else None

    def wait_for(self, ready, what: str, seconds: float) -> None:
        deadline = time.time() + seconds
        while not ready():
            assert self.proc.poll() is None, f"si up exited: {(self.tmp / 'si-up.err').read_text()[-2000:]}"
            assert time.time() < deadline, what
            time.sleep(0.2)

    def packed(self) -> None:
        def ready():
            packs = (self.api("/api/fleet") or {}).get("packs", [])
            return any(p["image"] == IMAGE and p["state"] == "ready" for p in packs)
        self.wait_for(ready, f"no pack of {IMAGE} became ready: {self.api('/api/fleet')}", 60)

    def install(self, indexes, extra_env: dict | None = None, timeout: float = 120) -> list[dict]:
        """Run the pull of every listed machine at once; their results once all have ended."""
        procs = []
        for i in indexes:
            target, work = self.tmp / f"target{i}", self.tmp / f"si-tmp{i}"
            target.mkdir(exist_ok=True)
            env = dict(os.environ, PATH=f"{self.stubs}:/usr/sbin:/usr/bin:/sbin:/bin",
                       CALLS=str(self.tmp / f"calls{i}"), IMAGESERVER=SERVER, SI_HTTP_PORT="8080",
                       HOSTNAME=f"node{i}", DEVICE="eth0", TARGET=str(target), SI_TMP=str(work),
                       SI_FUNCTIONS_ONLY="1", **(extra_env or {}))
            script = f'. {self.master} && pull_image && stop_seeding'
            procs.append((i, self.lab.popen(self.clients[i], "busybox", "sh", "-c", script, env=env,
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
        results = []
        for i, proc in procs:
            out, _ = proc.communicate(timeout=timeout)
            log = Path(self.tmp / f"calls{i}.log")
            results.append({"rc": proc.returncode, "out": out, "log": log.read_text() if log.exists() else "",
                            "target": self.tmp / f"target{i}"})
        return results

    def differences(self, target: Path) -> list[str]:
        diff = subprocess.run(["rsync", "-naHAXc", "--numeric-ids", "--delete", "--itemize-changes",
                               f"{self.image}/", f"{target}/"], capture_output=True, text=True, check=True)
        return [line for line in diff.stdout.splitlines() if line.strip() and not line.endswith(" ./")]


def assert_identical(fleet: Fleet, result: dict) -> None:
    assert result["rc"] == 0, f"the pull failed:\n{result['out']}\n{result['log']}"
    assert fleet.differences(result["target"]) == [], result["log"]
    notes = result["target"] / "home/user/notes"
    assert os.stat(notes).st_uid == 1234
    assert os.getxattr(result["target"] / "usr/lib/random/blob3.bin", "user.si-test") == b"kept"
    assert os.stat(result["target"] / "usr/lib/blob0-link.bin").st_ino == \
        os.stat(result["target"] / "usr/lib/random/blob0.bin").st_ino
    assert not (result["target"] / ".si-stream").exists(), "the downloaded stream was left on the disk"


def repaired_bytes(log: str) -> int:
    line = next(l for l in log.splitlines() if "bytes repaired from the appliance" in l)
    return int(line.split("then rsync: ")[1].split()[0])


def test_three_machines_install_from_one_swarm(lab, tmp_path):
    fleet = Fleet(lab, tmp_path, 3, {"transport": "bittorrent", "seed_seconds": 1, "join_timeout": 20})
    fleet.packed()
    results = fleet.install(range(3))
    for r in results:
        assert_identical(fleet, r)
        assert "transport bittorrent: " in r["log"] and "bytes of stream unpacked" in r["log"], r["log"]
        assert "falling back" not in r["log"], r["log"]
        # The stream was right: the rsync pass moved file lists, not the image's 12 MiB.
        assert repaired_bytes(r["log"]) < MIB, r["log"]
    status = fleet.api("/api/fleet")
    assert status["tracker"] and f"{IMAGE}:1" in status["seeding"], status


def test_two_machines_install_from_one_multicast_session(lab, tmp_path):
    fleet = Fleet(lab, tmp_path, 2, {"transport": "multicast", "min_receivers": 2, "min_wait": 0,
                                     "max_wait": 20, "join_timeout": 20})
    fleet.packed()
    results = fleet.install(range(2))
    for r in results:
        assert_identical(fleet, r)
        assert "transport multicast: session on port 9000" in r["log"], r["log"]
        assert "falling back" not in r["log"] and repaired_bytes(r["log"]) < MIB, r["log"]
    sessions = fleet.api("/api/fleet")["sessions"]
    assert [(s["port"], s["receivers"]) for s in sessions] == [(9000, 2)], sessions


def test_a_damaged_multicast_stream_falls_back_to_rsync_and_ends_identical(lab, tmp_path):
    fleet = Fleet(lab, tmp_path, 1, {"transport": "multicast", "min_wait": 0, "max_wait": 5, "join_timeout": 20})
    fleet.packed()
    stream = next((tmp_path / "state/packs" / IMAGE).glob("*/image.tar.zst"))
    data = bytearray(stream.read_bytes())
    data[len(data) // 2:len(data) // 2 + 4096] = os.urandom(4096)   # what a bad switch might do
    stream.write_bytes(bytes(data))
    [r] = fleet.install([0])
    assert "transport multicast failed, falling back to rsync" in r["log"], r["log"]
    assert "transport rsync (fallback from multicast)" in r["log"], r["log"]
    assert_identical(fleet, r)


def children(pid: int) -> dict[int, str]:
    """{pid: program} of a process's children."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found[int(child)] = Path(f"/proc/{child}/comm").read_text().strip()
    return found


def test_a_machine_that_cannot_join_the_swarm_falls_back_to_rsync(lab, tmp_path):
    fleet = Fleet(lab, tmp_path, 2, {"transport": "bittorrent", "seed_seconds": 0, "join_timeout": 4})
    fleet.packed()
    [first] = fleet.install([0])
    assert "transport bittorrent: " in first["log"] and "falling back" not in first["log"], first["log"]
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
        in second["log"], second["log"]
    assert_identical(fleet, second)
    assert time.time() - started < 60


def test_a_machine_whose_image_is_not_packed_yet_is_told_rsync_and_why(lab, tmp_path):
    fleet = Fleet(lab, tmp_path, 1, {"transport": "rsync", "images": {IMAGE: "rsync"}})
    [r] = fleet.install([0], {"SI_TRANSPORT": "multicast"})
    assert_identical(fleet, r)
    assert "transport rsync: multicast not possible now: fleetimg:1 is being packed" in r["log"], r["log"]
    fleet.packed()   # asking started the packing

#!/usr/bin/env python3
"""updateclient vs plain rsync for a 1% change: bytes on the wire and seconds.

Both pull the same version change from the same real rsync daemon, in lab
namespaces joined by a veth pair, in the same run. The daemon's own transfer
log gives the bytes each client moved. Prints JSON as its last line:
{"ratio_bytes": ours/plain, "ratio_seconds": ours/plain, ...}
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.client import siclient  # noqa: E402
from appliance.lab.netns import Lab  # noqa: E402

SENT = re.compile(r"sent (\d+) bytes\s+received (\d+) bytes")


def make_tree(root: Path, files: int, size: int, seed: int) -> None:
    rng = random.Random(seed)
    for i in range(files):
        path = root / f"d{i % 50:02d}" / f"f{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))


def change_one_percent(src: Path, dst: Path, seed: int) -> int:
    shutil.copytree(src, dst, symlinks=True, copy_function=os.link)  # hard links: cheap copy
    files = sorted(p for p in dst.rglob("*.bin"))
    rng = random.Random(seed)
    changed = rng.sample(files, max(1, len(files) // 100))
    for path in changed:
        data = bytearray(path.read_bytes())
        path.unlink()  # break the hard link before writing
        offset = rng.randrange(0, len(data) - 4096)
        data[offset:offset + 4096] = rng.randbytes(4096)
        path.write_bytes(bytes(data))
    return len(changed)


def daemon_bytes(log: Path, since: int) -> int:
    text = log.read_text()[since:]
    return sum(int(a) + int(b) for a, b in SENT.findall(text))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--size", type=int, default=16 * 1024)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="si-bench-update-"))
    try:
        v1, v2 = work / "v1", work / "v2"
        make_tree(v1, args.files, args.size, 1)
        changed = change_one_percent(v1, v2, 2)
        log = work / "rsyncd.log"
        conf = work / "rsyncd.conf"
        conf.write_text(f"pid file = {work}/rsyncd.pid\nuse chroot = no\nnumeric ids = yes\nlog file = {log}\n"
                        f"[img@2]\npath = {v2}\nread only = yes\nuid = root\ngid = root\n")
        results = {"ours": [], "plain": []}
        with Lab() as lab:
            server, client = lab.namespace("srv"), lab.namespace("cli")
            lab.veth(client, "eth0", server, "eth0", "10.77.0.11/24", "10.77.0.1/24")
            lab.popen(server, "rsync", "--daemon", "--no-detach", f"--config={conf}", "--address=10.77.0.1")
            deadline = time.time() + 10
            while lab.run(client, "rsync", "rsync://10.77.0.1/", check=False).returncode:
                if time.time() > deadline:
                    raise SystemExit("rsync daemon did not start")
                time.sleep(0.1)
            for round_ in range(args.rounds):
                for who in ("plain", "ours"):
                    target = work / f"{who}-{round_}"
                    subprocess.run(["cp", "-a", str(v1), str(target)], check=True)
                    mark = log.stat().st_size if log.exists() else 0
                    if who == "plain":
                        cmd = ["rsync", "-aHAX", "--numeric-ids", "--delete", "rsync://10.77.0.1/img@2/",
                               f"{target}/"]
                    else:
                        cmd = [sys.executable, siclient.__file__, "updateclient", "--server", "10.77.0.1",
                               "--image", "img:2", "--root", str(target), "--no-report"]
                    t = time.perf_counter()
                    lab.run(client, *cmd, timeout=600)
                    seconds = time.perf_counter() - t
                    time.sleep(0.2)  # the daemon logs its totals as the connection closes
                    results[who].append({"seconds": seconds, "bytes": daemon_bytes(log, mark)})
                    shutil.rmtree(target)
        best = {who: min(runs, key=lambda r: r["seconds"]) for who, runs in results.items()}
        out = {
            "files": args.files, "file_size": args.size, "changed_files": changed,
            "plain_bytes": best["plain"]["bytes"], "ours_bytes": best["ours"]["bytes"],
            "plain_seconds": round(best["plain"]["seconds"], 3), "ours_seconds": round(best["ours"]["seconds"], 3),
            "ratio_bytes": round(best["ours"]["bytes"] / best["plain"]["bytes"], 3),
            "ratio_seconds": round(best["ours"]["seconds"] / best["plain"]["seconds"], 3),
        }
        print(json.dumps(out))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

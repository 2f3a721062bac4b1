#!/usr/bin/env python3
"""Benchmark: `si getimage` against plain `rsync -aHAX --numeric-ids --sparse` of the same tree.

A golden client in its own network namespace runs prepareclient on a
generated tree; the appliance namespace pulls it both ways from the same
temporary rsync daemon, in the same run:

  ratio_first     first pull, whole `si getimage` command / plain rsync
  ratio_nochange  pull again with nothing changed / plain rsync again
  ratio_change    pull after 1% of the files changed / plain rsync again
  dedup_ratio     disk used by that second version / image size

Prints a JSON object as the last line. Needs root. Usage:
  python3 bench/getimage.py [--files 30000] [--big-mib 200] [--repeat 3]

The default tree (30,000 small files and 200 MiB of large ones, ~500 MB) is
the size of a small Debian system; our fixed costs (Python start, reading
mounted_filesystems, the no-change dry run's extra connection) weigh more on
smaller trees. Best of --repeat interleaved runs; the machine is shared.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from appliance.images import disk_usage  # noqa: E402

PEER = ("-aHAX", "--numeric-ids", "--sparse")   # what getimage keeps: links, ACLs, xattrs, owners, holes
from appliance.lab.netns import Lab  # noqa: E402
from support.images_tree import build_golden_tree  # noqa: E402

APPL, GOLD, PORT = "10.93.0.1", "10.93.0.2", 1873


def make_tree(root: Path, files: int, big_mib: int, seed: int = 1) -> None:
    build_golden_tree(root, files=50, seed=seed)  # the special entries
    rnd = random.Random(seed)
    for i in range(files):
        d = root / "usr/share" / f"d{i % 97:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"file{i:05d}").write_bytes(rnd.randbytes(rnd.choice((100, 700, 2000, 5000, 12000, 40000))))
    for i in range(4):
        (root / f"usr/lib/blob{i}.bin").write_bytes(os.urandom(big_mib * 1024 * 1024 // 4))


def timed(fn) -> float:
    os.sync()  # start each run with no dirty pages from the previous one
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=30000)
    ap.add_argument("--big-mib", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tmpfs-gib", type=int, default=4, help="size of the private tmpfs holding every tree")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-getimage-"))
    # Everything on a private tmpfs: the shared machine's disk writeback would
    # otherwise swamp the difference between the two tools.
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={args.tmpfs_gib}g", "tmpfs", str(tmp)], check=True)
    try:
        with Lab() as lab:
            appl, gold = lab.namespace("bgi-appl"), lab.namespace("bgi-gold")
            lab.veth(gold, "eth0", appl, "eth0", addr_a=f"{GOLD}/24", addr_b=f"{APPL}/24")
            root = tmp / "golden"
            make_tree(root, args.files, args.big_mib)
            state = tmp / "state"
            config = tmp / "appliance.toml"
            config.write_text(f'interface = "eth0"\naddress = "{APPL}"\nstate_dir = "{state}"\n'
                              f'log_dir = "{tmp / "log"}"\n[services]\ndhcp = false\n')
            out = lab.run(gold, sys.executable, str(REPO / "appliance/client/siclient.py"), "prepareclient",
                          "--root", str(root), "--server", APPL, "--yes", "--port", str(PORT),
                          "--run-dir", str(tmp / "gold-run")).stdout
            secret = re.search(r"One-time secret: (\S+)", out).group(1)
            env = {**os.environ, "RSYNC_PASSWORD": secret}
            plain_dest = tmp / "plain"

            def plain() -> None:
                # the peer gets --sparse too: getimage keeps holes, and the tree has a sparse file
                lab.run(appl, "rsync", *PEER, f"rsync://systemimager@{GOLD}:{PORT}/root/",
                        f"{plain_dest}/", env=env, timeout=1800)

            def ours(image: str = "bench") -> None:
                proc = lab.run(appl, sys.executable, "-m", "appliance.cli", "getimage", "--config", str(config),
                               "--golden-client", GOLD, "--image", image, "--secret", secret, "--port", str(PORT),
                               "--yes", "--no-progress", cwd=REPO, check=False, timeout=1800)
                if proc.returncode != 0:
                    raise SystemExit(f"si getimage failed: {proc.stderr}")

            for p in root.rglob("*"):  # warm the page cache so neither side pays the first read
                if p.is_file() and not p.is_symlink():
                    p.read_bytes()
            firsts_plain, firsts_ours = [], []
            for _ in range(args.repeat):
                shutil.rmtree(plain_dest, ignore_errors=True)
                firsts_plain.append(timed(plain))
                lab.run(appl, sys.executable, "-m", "appliance.cli", "images", "delete", "bench", "--config",
                        str(config), cwd=REPO, check=False)
                firsts_ours.append(timed(ours))
            nochange_plain, nochange_ours = [], []
            for _ in range(args.repeat):
                nochange_plain.append(timed(plain))
                nochange_ours.append(timed(ours))
            # Change 1% of the files, then pull once more each way.
            files = sorted(p for p in (root / "usr/share").rglob("file*"))
            for p in random.Random(5).sample(files, max(1, len(files) // 100)):
                p.write_bytes(p.read_bytes()[:100] + os.urandom(100))
            change_plain = timed(plain)
            change_ours = timed(ours)
            versions = state / "images/.versions/bench"
            v1, v2 = sorted((p for p in versions.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))[-2:]
            size = disk_usage([v2])
            extra = disk_usage([v1, v2]) - disk_usage([v1])
            med = min  # the run least disturbed by other work on this shared machine
            result = {
                "ratio_first": round(med(firsts_ours) / med(firsts_plain), 3),
                "ratio_nochange": round(med(nochange_ours) / med(nochange_plain), 3),
                "ratio_change": round(change_ours / change_plain, 3),
                "dedup_ratio": round(extra / size, 4),
                "first_s": {"ours": round(med(firsts_ours), 3), "plain": round(med(firsts_plain), 3)},
                "nochange_s": {"ours": round(med(nochange_ours), 3), "plain": round(med(nochange_plain), 3)},
                "change_s": {"ours": round(change_ours, 3), "plain": round(change_plain, 3)},
                "image_bytes_on_disk": size, "second_version_bytes_on_disk": extra,
                "files": args.files, "big_mib": args.big_mib, "repeat": args.repeat,
                "peer": " ".join(["rsync", *PEER]) + " " + subprocess.run(
                    ["rsync", "--version"], capture_output=True, text=True).stdout.split("\n")[0],
            }
    finally:
        subprocess.run(["umount", "-l", str(tmp)], check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

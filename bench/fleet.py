#!/usr/bin/env python3
"""N machines installing one image at once: rsync, BitTorrent and multicast, in one run.

`si up` and N machines in namespaces on one switch (appliance/lab/fleet_lab.py); every
cable, the appliance's included, shaped with tc tbf. Each machine runs the master script's
image pull (the initrd's commands: ctorrent or aria2c, udp-receiver, zstd, GNU tar, then
the rsync pass) into a directory. The image is a copy of this machine's own /usr files,
so it compresses like a system does. Seconds are from the start of all pulls to the
moment the last machine has the image in place (a finished BitTorrent peer goes on
seeding meanwhile, as an installing machine would while it configures and reboots).

Prints JSON as its last line: seconds per transport and N, ratio_8_vs_1,
appliance_egress_vs_image_8 (bytes the appliance sent / image bytes, 8 machines),
cpu_busy_pct beside each figure, and for BitTorrent stream_in_place_seconds (when the
last machine had the whole stream, before it unpacked).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.lab.fleet_lab import ENGINES, FleetLab, boot_clock  # noqa: E402
from appliance.lab.netns import Lab  # noqa: E402

MIB = 1024 * 1024
SOURCES = ("/usr/lib/x86_64-linux-gnu", "/usr/share", "/usr/lib/python3", "/usr/bin", "/usr/lib")


def build_image(root: Path, mib: int) -> int:
    """Copy this machine's /usr files (binaries, libraries, text) into root until it holds
    `mib` MiB; returns the bytes copied. Kept between runs (it is only ever read)."""
    stamp = root / ".si-bench-size"
    if stamp.exists():
        return int(stamp.read_text())
    shutil.rmtree(root, ignore_errors=True)
    total, seen = 0, set()
    for source in SOURCES:
        for dirpath, dirnames, filenames in os.walk(source):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                try:
                    st = path.lstat()
                except OSError:
                    continue
                if not path.is_file() or path.is_symlink() or st.st_ino in seen or st.st_size > 64 * MIB:
                    continue
                seen.add(st.st_ino)
                dest = root / path.relative_to("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    shutil.copy2(path, dest)
                except OSError:
                    continue
                total += st.st_size
                if total >= mib * MIB:
                    stamp.write_text(str(total))
                    return total
    raise SystemExit(f"this machine's /usr holds less than {mib} MiB to copy")


class CpuMeter:
    """Share of the machine's CPU time that was not idle, between start() and busy_pct()."""

    @staticmethod
    def _sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields), idle

    def start(self) -> None:
        self.before = self._sample()

    def busy_pct(self) -> float:
        total, idle = self._sample()
        dt, di = total - self.before[0], idle - self.before[1]
        return round(100.0 * (dt - di) / dt, 1) if dt else 0.0


def one_run(fleet: FleetLab, n: int, transport: str, env: dict, timeout: float) -> dict:
    for i in range(n):
        shutil.rmtree(fleet.workdir / f"target{i}", ignore_errors=True)
        shutil.rmtree(fleet.workdir / f"si-tmp{i}", ignore_errors=True)
    cpu = CpuMeter()
    sent_before = fleet.tx_bytes()
    cpu.start()
    started = boot_clock()
    pulls = fleet.finish(fleet.start(range(n), {"SI_TRANSPORT": transport, **env}), timeout=timeout,
                         stop_when_pulled=True)
    busy = cpu.busy_pct()
    sent = fleet.tx_bytes() - sent_before
    failed = [p for p in pulls if p.pulled_at is None]
    if failed:
        raise SystemExit(f"{transport} n={n}: machine {failed[0].index} did not finish:\n"
                         f"{failed[0].out[-1500:]}\n{failed[0].log[-1500:]}")
    fell_back = [p.index for p in pulls if "falling back" in p.log or f"transport {transport}" not in p.log]
    if transport != "rsync" and fell_back:
        raise SystemExit(f"{transport} n={n}: machines {fell_back} did not use {transport}:\n{pulls[fell_back[0]].log}")
    # BitTorrent downloads the whole stream, then unpacks ("unpack" phase): when the last
    # machine had the stream, apart from the unpacking that eight machines share two cores for.
    streamed = [p.phases.get("unpack") for p in pulls] if transport == "bittorrent" else [None]
    return {"seconds": round(max(p.pulled_at for p in pulls) - started, 2), "sent": sent, "cpu": busy,
            "stream_seconds": round(max(streamed) - started, 2) if all(streamed) else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-mib", type=int, default=256)
    ap.add_argument("--link-mbit", type=int, default=100)
    ap.add_argument("--machines", default="1,4,8", help="comma-separated N (add 16 if the cores allow)")
    ap.add_argument("--transports", default="rsync,bittorrent,multicast")
    ap.add_argument("--bt-clients", default="ctorrent",
                    help="BitTorrent clients the machines run, comma-separated (ctorrent, aria2c)")
    ap.add_argument("--image-dir", type=Path, default=Path("/var/tmp/si-bench-fleet-image"))
    args = ap.parse_args()
    missing = [p for p in (*ENGINES, "tc") if shutil.which(p) is None]
    if missing:
        raise SystemExit(f"bench/fleet.py needs {', '.join(missing)} (setup.sh installs them)")
    counts = [int(x) for x in args.machines.split(",")]
    transports = args.transports.split(",")
    runs = [(t, {}) for t in transports if t != "bittorrent"]
    if "bittorrent" in transports:
        clients = args.bt_clients.split(",")
        runs[1:1] = [("bittorrent" if c == clients[0] else f"bittorrent_{c}", {"SI_BT_CLIENT": c}) for c in clients]
    image_root = args.image_dir / f"{args.image_mib}mib"
    print(f"image: {args.image_mib} MiB of this machine's /usr files in {image_root}", file=sys.stderr)
    image_bytes = build_image(image_root, args.image_mib)
    # 100 Mbit/s moves the image in about image/12.5 MB/s; allow ten times that per machine.
    timeout = 60 + 10 * image_bytes / (args.link_mbit * 1e6 / 8)
    seconds: dict = {name: {} for name, _ in runs}
    cpu: dict = {name: {} for name, _ in runs}
    sent: dict = {name: {} for name, _ in runs}
    pack_seconds = {}
    streamed: dict = {}
    for n in counts:
        with tempfile.TemporaryDirectory(prefix="si-bench-fleet-") as tmp, Lab() as lab:
            started = time.monotonic()
            fleet = FleetLab(lab, Path(tmp), image_root, hosts=n, link_mbit=args.link_mbit, fleet={
                "seed_seconds": 600, "join_timeout": 60,
                # one session per N, started when all have joined; sent below the link's
                # rate, as an operator would set it (above it, the shaper drops and udpcast
                # spends its time on retransmissions)
                "min_receivers": n, "min_wait": 0, "max_wait": 60,
                "max_bitrate": f"{int(args.link_mbit * 0.9)}m"})
            # (the default transport is rsync, so the first ask for another one starts the packing)
            fleet.api(f"/api/fleet/{fleet.image}/node0?transport=bittorrent")
            pack = fleet.packed(seconds=600)
            pack_seconds[str(n)] = round(time.monotonic() - started, 1)
            stream_mib = (pack.get("bytes") or 0) / MIB
            print(f"n={n}: {image_bytes / MIB:.0f} MiB packed into a {stream_mib:.0f} MiB stream "
                  f"{pack_seconds[str(n)]} s after the appliance started", file=sys.stderr)
            for name, env in runs:
                transport = name.split("_")[0]
                got = one_run(fleet, n, transport, env, timeout)
                seconds[name][str(n)], cpu[name][str(n)], sent[name][str(n)] = got["seconds"], got["cpu"], got["sent"]
                if got["stream_seconds"] is not None:
                    streamed.setdefault(name, {})[str(n)] = got["stream_seconds"]
                print(f"n={n} {name}: {got['seconds']} s (stream in place after {got['stream_seconds']} s), "
                      f"appliance sent {got['sent'] / MIB:.0f} MiB, cpu {got['cpu']} %", file=sys.stderr)
    result = {
        "image_mib": round(image_bytes / MIB, 1), "link_mbit": args.link_mbit,
        "seconds": seconds, "cpu_busy_pct": cpu, "packed_after_start_seconds": pack_seconds,
        "appliance_sent_mib": {t: {k: round(v / MIB, 1) for k, v in d.items()} for t, d in sent.items()},
        "stream_in_place_seconds": streamed,
    }
    if "1" in seconds[runs[0][0]] and "8" in seconds[runs[0][0]]:
        result["ratio_8_vs_1"] = {t: round(d["8"] / d["1"], 2) for t, d in seconds.items()}
        result["appliance_egress_vs_image_8"] = {t: round(d["8"] / image_bytes, 2) for t, d in sent.items()
                                                 if t != "rsync"}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

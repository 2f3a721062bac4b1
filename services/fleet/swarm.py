"""The BitTorrent swarm's engines: opentracker as the tracker, aria2c as the first seed.

Debian builds opentracker with a whitelist of info hashes: it serves only the
torrents of this appliance's packs (others get "not authorized"). The seeder is
one aria2c per pack, bound to the appliance's address, with DHT, local peer
discovery and peer exchange off: the torrents are private to the install network.
"""
from __future__ import annotations

import re
from pathlib import Path

WHITELIST = "whitelist"   # inside the tracker's chroot directory
PRIVATE_SWARM = ("--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
                 "--enable-peer-exchange=false")


def announce_url(address: str, port: int) -> str:
    return f"http://{address}:{port}/announce"


def tracker_argv(address: str, port: int, directory: Path) -> list[str]:
    """opentracker on address:port (TCP and UDP), chrooted to directory as nobody."""
    return ["opentracker", "-i", address, "-p", str(port), "-P", str(port),
            "-d", str(directory), "-u", "nobody", "-w", f"/{WHITELIST}"]


def whitelist_text(info_hashes: list[str]) -> str:
    return "".join(f"{h}\n" for h in sorted(set(info_hashes)))


SUMMARY_SECONDS = 2     # how often the seeder prints its readout (what it has uploaded)
# aria2c's readout of a seeding download: "[#31a6ad SEED(1.2) CN:3 SD:0 UL:11MiB(140MiB)]",
# the upload rate and, in brackets, the total uploaded.
_UPLOADED = re.compile(r"\bUL:[0-9.]+[KMG]?i?B\(([0-9.]+)([KMG]?)i?B\)")
_UNIT = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}


def uploaded_of(line: str) -> int | None:
    """Bytes the seeder has uploaded, from one line of its readout (None: not such a line)."""
    found = _UPLOADED.search(line)
    return int(float(found.group(1)) * _UNIT[found.group(2)]) if found else None


def seeder_argv(torrent: Path, directory: Path, address: str, port: int) -> list[str]:
    """aria2c seeding the finished stream in directory for ever (it was hashed when packed)."""
    return ["aria2c", f"--dir={directory}", "--seed-ratio=0.0", "--bt-seed-unverified=true",
            "--check-integrity=false", f"--interface={address}", f"--listen-port={port}",
            *PRIVATE_SWARM, f"--summary-interval={SUMMARY_SECONDS}", "--console-log-level=warn",
            "--enable-rpc=false", "--auto-save-interval=0", "--bt-max-peers=0", str(torrent)]


SS_ARGV = ["ss", "-Htinp", "state", "established"]   # the kernel's TCP counters, with their processes
_PID = re.compile(r"pid=(\d+),")
_ACKED = re.compile(r"\bbytes_acked:(\d+)")


def acked_by_connection(ss_text: str, pids: set[int]) -> dict[tuple[int, str, str], int]:
    """{(pid, local address:port, peer address:port): bytes the peer has acknowledged} for the
    connections of the given processes, from `ss -Htinp state established` output (each
    connection a line of addresses and process, then an indented line of counters)."""
    out = {}
    key = None
    for line in ss_text.splitlines():
        if line[:1].isspace():
            if key is not None and (found := _ACKED.search(line)):
                out[key] = int(found.group(1))
            key = None
            continue
        fields, owners = line.split(), {int(x) for x in _PID.findall(line)}
        key = None
        if len(fields) >= 4 and owners & pids:
            key = (min(owners & pids), fields[2], fields[3])
    return out


def peer_address(endpoint: str) -> str:
    """'10.77.0.51:40218' -> '10.77.0.51' (and '[::ffff:10.77.0.51]:40218' -> '10.77.0.51')."""
    host = endpoint.rsplit(":", 1)[0].strip("[]")
    return host.removeprefix("::ffff:")


"""One image version as one stream: a zstd-compressed GNU tar and its private .torrent.

The tar keeps what rsync -aHAX keeps (owners by number, modes, hard links,
symlinks, device nodes, ACLs, xattrs) and stores holes as holes. The same
options unpack it in the installer (EXTRACT, used by the master script), and
the rsync pass that follows repairs anything the stream got wrong.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import bencode

STREAM = "image.tar.zst"
TORRENT = "image.torrent"
META = "pack.json"
# tar options both ends share; --xattrs-include: GNU tar keeps only user.* without it.
TAR_OPTIONS = ("--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls")
# posix format: nanosecond mtimes, so rsync's quick check after the stream finds nothing to do.
CREATE = ("tar", "--create", "--file=-", "--format=posix", "--pax-option=delete=atime,delete=ctime",
          "--sparse", "--one-file-system", *TAR_OPTIONS)
EXTRACT = ("tar", "--extract", "--file=-", "--preserve-permissions", "--same-owner", *TAR_OPTIONS)
ZSTD_LEVEL = 3   # fast enough to pack in the background; the stream is about a third of the tree


class PackError(RuntimeError):
    """The image could not be packed; the message says which step and why."""


@dataclass(frozen=True)
class Pack:
    directory: Path
    size: int          # bytes of the compressed stream
    info_hash: str
    announce: str

    @property
    def stream(self) -> Path:
        return self.directory / STREAM

    @property
    def torrent(self) -> Path:
        return self.directory / TORRENT


def piece_exponent(size: int) -> int:
    """mktorrent's -l: about 1,000 to 2,000 pieces, from 256 KiB to 16 MiB each."""
    exponent = 18
    while exponent < 24 and size >> exponent > 2000:
        exponent += 1
    return exponent


def read(directory: Path) -> Pack | None:
    """The finished pack in directory, or None (absent, unfinished or unreadable)."""
    try:
        meta = json.loads((directory / META).read_text())
        if not (directory / STREAM).is_file() or not (directory / TORRENT).is_file():
            return None
        return Pack(directory, int(meta["size"]), str(meta["info_hash"]), str(meta["announce"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def state(directory: Path) -> str:
    """'ready', 'packing' (a build's work directory is there) or 'absent'."""
    if read(directory) is not None:
        return "ready"
    return "packing" if directory.with_name(directory.name + ".partial").is_dir() else "absent"


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise PackError(f"cannot pack: {', '.join(missing)} not found (apt-get install tar zstd mktorrent)")


def build(tree: Path, directory: Path, announce: str,
          step: Callable[[str], None] = lambda _s: None) -> Pack:
    """Pack tree into directory (replaced only once complete) with a torrent announcing to announce."""
    _need("tar", "zstd", "mktorrent")
    work = directory.with_name(directory.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    stream = work / STREAM
    step(f"packing {tree} into {stream.name}")
    with open(stream, "wb") as out, open(work / "tar.err", "wb") as tar_err:
        tar = subprocess.Popen([*CREATE, "-C", str(tree), "."], stdout=subprocess.PIPE, stderr=tar_err)
        zstd = subprocess.run(["zstd", "-q", f"-{ZSTD_LEVEL}", "-T0", "-c"], stdin=tar.stdout, stdout=out,
                              stderr=subprocess.PIPE)
        tar.stdout.close()
        tar_rc = tar.wait()
    words = (work / "tar.err").read_text(errors="replace").strip()
    if tar_rc not in (0, 1) or zstd.returncode != 0:   # tar 1: a file changed while read, harmless here
        shutil.rmtree(work, ignore_errors=True)
        raise PackError(f"tar of {tree} failed (tar {tar_rc}, zstd {zstd.returncode}): "
                        f"{(words or zstd.stderr.decode(errors='replace'))[-300:]}")
    size = stream.stat().st_size
    step(f"hashing {size} bytes for the torrent")
    made = subprocess.run(["mktorrent", "-p", "-a", announce, "-l", str(piece_exponent(size)),
                           "-o", str(work / TORRENT), str(stream)], capture_output=True, text=True)
    if made.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        raise PackError(f"mktorrent failed: {made.stderr.strip()[-300:]}")
    digest = bencode.info_hash((work / TORRENT).read_bytes())
    (work / "tar.err").unlink()
    (work / META).write_text(json.dumps({"size": size, "info_hash": digest, "announce": announce}))
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(work, directory)
    return Pack(directory, size, digest, announce)

"""A golden-client tree with everything a system holds, and a strict tree comparison.

Used by the image tests (tests/test_images_*.py) and bench/getimage.py.
"""
from __future__ import annotations

import os
import random
import shutil
import stat
import subprocess
from pathlib import Path

UNMAPPED_UID, UNMAPPED_GID = 48213, 51977   # in no passwd/group file


def build_golden_tree(root: Path, *, files: int = 300, seed: int = 7) -> dict:
    """Fill root with a small system-like tree; returns notes about special entries."""
    rnd = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for d in ("etc", "usr/bin", "usr/lib/x", "var/log", "var/cache/apt", "home/alice", "dev", "proc",
              "mnt/scratch", "tmp", "boot/efi"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    (root / "etc/fstab").write_text("/dev/vda1 / ext4 defaults 0 1\n")
    (root / "etc/hostname").write_text("golden\n")
    for i in range(files):
        d = root / ("usr/lib/x" if i % 3 else "usr/bin")
        size = rnd.choice((0, 1, 100, 4096, 5000, 70000))
        (d / f"f{i:04d}").write_bytes(rnd.randbytes(size))
    (root / "usr/lib/big.bin").write_bytes(rnd.randbytes(3 * 1024 * 1024))
    (root / "var/cache/apt/pkgcache.bin").write_bytes(rnd.randbytes(200_000))
    (root / "var/log/syslog").write_text("log line\n" * 1000)
    # Devices, a FIFO, a socket-free special set.
    os.mknod(root / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(root / "dev/loop7", 0o660 | stat.S_IFBLK, os.makedev(7, 7))
    os.mkfifo(root / "dev/initctl", 0o600)
    # Symlinks: relative, absolute (must not be resolved on the server), dangling.
    os.symlink("../lib/x/f0001", root / "usr/bin/rel-link")
    os.symlink("/etc/hostname", root / "etc/abs-link")
    os.symlink("/nowhere/at/all", root / "etc/dangling")
    # Hard links: three names, one inode.
    (root / "usr/bin/busy").write_bytes(b"#!/bin/sh\necho busy\n")
    os.link(root / "usr/bin/busy", root / "usr/bin/busy-ls")
    os.link(root / "usr/bin/busy", root / "usr/lib/busy-again")
    # A sparse file: 64 MiB apparent, a few KiB of data.
    with open(root / "var/sparse.img", "wb") as f:
        f.truncate(64 * 1024 * 1024)
        f.seek(10 * 1024 * 1024)
        f.write(b"data in the middle" * 100)
    # Owned by ids no passwd knows; setuid; odd modes.
    p = root / "home/alice/orphan"
    p.write_text("whose?\n")
    os.chown(p, UNMAPPED_UID, UNMAPPED_GID)
    os.chown(root / "home/alice", UNMAPPED_UID, UNMAPPED_GID)
    s = root / "usr/bin/su-like"
    s.write_bytes(b"\x7fELF fake")
    os.chmod(s, 0o4755)
    os.chmod(root / "etc/hostname", 0o600)
    # Names that need care.
    (root / "etc/with space & ünïcode").write_text("x\n")
    (root / "etc/new\nline").write_text("y\n")
    # Extended attributes (user and trusted namespaces) and an ACL.
    os.setxattr(root / "etc/fstab", "user.si.note", b"golden")
    os.setxattr(root / "usr/bin/busy", "trusted.si.flag", b"\x00\x01\x02")
    os.setxattr(root / "home/alice", "user.si.dir", b"d")
    if shutil.which("setfacl") is None:
        raise AssertionError("setfacl not found: install the Debian package acl")
    subprocess.run(["setfacl", "-m", "u:1234:rwx,g:777:r", str(root / "etc/fstab")], check=True)
    subprocess.run(["setfacl", "-d", "-m", "u:1234:rx", str(root / "home/alice")], check=True)
    # Fixed mtimes (also on a symlink) so a comparison catches dropped times.
    os.utime(root / "usr/lib/big.bin", ns=(1_600_000_000_000_000_000, 1_500_000_000_123_456_789))
    os.utime(root / "etc/abs-link", ns=(1_400_000_000_000_000_000, 1_400_000_000_000_000_000),
             follow_symlinks=False)
    return {"sparse": "var/sparse.img", "hardlinks": ["usr/bin/busy", "usr/bin/busy-ls", "usr/lib/busy-again"]}


def _xattrs(path: str) -> dict:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in sorted(names)}


def snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict:
    """Every entry's metadata and content digest, keyed by relative path."""
    import hashlib
    out = {}
    inode_groups: dict[tuple[int, int], list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if any(rel == s or rel.startswith(s.rstrip("/") + "/") for s in skip):
                continue
            st = os.lstat(full)
            entry = {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid, "xattrs": _xattrs(full),
                     "mtime_ns": st.st_mtime_ns}
            if stat.S_ISREG(st.st_mode):
                entry["size"] = st.st_size
                with open(full, "rb") as f:
                    entry["sha256"] = hashlib.sha256(f.read()).hexdigest()
                inode_groups.setdefault((st.st_dev, st.st_ino), []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                entry["target"] = os.readlink(full)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                entry["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
            out[rel] = entry
    # Hard-link identity: the set of names sharing an inode, per name.
    for names in inode_groups.values():
        for n in names:
            out[n]["links"] = sorted(names)
    return out


def diff(a: dict, b: dict) -> list[str]:
    problems = []
    for rel in sorted(set(a) | set(b)):
        if rel not in b:
            problems.append(f"missing in copy: {rel!r}")
        elif rel not in a:
            problems.append(f"extra in copy: {rel!r}")
        elif a[rel] != b[rel]:
            keys = [k for k in set(a[rel]) | set(b[rel]) if a[rel].get(k) != b[rel].get(k)]
            problems.append(f"{rel!r} differs in {keys}: {[a[rel].get(k) for k in keys]} vs "
                            f"{[b[rel].get(k) for k in keys]}")
    return problems

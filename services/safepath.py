"""Resolve a client-supplied path strictly inside a served root.

Shared by TFTP and HTTP boot-file serving. Refuses anything that could leave
the root or is not a plain file: '..' components, absolute escapes, sibling
prefixes (/srv/tftp-private beside /srv/tftp), backslashes, NULs, symlinks
whose target leaves the root, directories, FIFOs and devices.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path


class UnsafePath(Exception):
    """The requested path is outside the root or not a regular file."""


class NotFound(Exception):
    """The path is safe but no such file exists."""


def resolve(root: Path, requested: str) -> Path:
    parts = clean(requested).split("/")
    real_root = Path(os.path.realpath(root))
    candidate = Path(os.path.realpath(real_root.joinpath(*parts)))
    # Compare whole components, so /srv/tftp-private never passes for /srv/tftp.
    if candidate != real_root and real_root not in candidate.parents:
        raise UnsafePath(f"{requested!r} leads outside the root")
    try:
        st = candidate.stat()
    except FileNotFoundError:
        raise NotFound(requested) from None
    except OSError as exc:
        raise UnsafePath(f"{requested!r}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePath(f"{requested!r} is not a regular file")
    return candidate


def clean(requested: str) -> str:
    """The request as a root-relative 'a/b' path, or UnsafePath: no disk access.

    Used before asking dynamic-file providers, so they only ever see names that
    would also be safe on disk.
    """
    if not requested or "\x00" in requested or "\\" in requested:
        raise UnsafePath(f"bad characters in {requested!r}")
    if len(requested) > 1024:
        raise UnsafePath("path too long")
    parts = [p for p in requested.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafePath(f"'..' in {requested!r}")
    if not parts:
        raise UnsafePath("the root itself is not a file")
    return "/".join(parts)


def open_file(root: Path, requested: str) -> tuple[int, int]:
    """Open a resolved regular file for reading: (fd, size).

    Closes the race between resolve() and open(): the final component is
    opened without following symlinks and without blocking (a FIFO swapped in
    cannot hang the server), then the opened file itself is checked to be a
    regular file that still lies inside the root.
    """
    path = resolve(root, requested)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(requested) from None
    except OSError as exc:
        raise UnsafePath(f"{requested!r}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        real_root = os.path.realpath(root)
        opened = os.readlink(f"/proc/self/fd/{fd}")
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(f"{requested!r} is not a regular file")
        if not opened.startswith(real_root.rstrip("/") + "/"):
            raise UnsafePath(f"{requested!r} leads outside the root")
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size

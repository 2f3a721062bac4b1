"""The newc ("070701") cpio format the kernel unpacks as an initramfs.

Written by us so that building a boot image needs no cpio tool. The writer
streams entries to any binary file object (a gzip or xz stream, usually); the
reader parses an archive back, for tests and `si mkbootimage --list`.
"""
from __future__ import annotations

import stat
from dataclasses import dataclass
from typing import BinaryIO, Iterator

MAGIC = b"070701"
TRAILER = "TRAILER!!!"
_HEADER_LEN = 110  # magic + 13 fields of 8 hex digits


class CpioError(ValueError):
    """The archive is not well-formed newc."""


@dataclass(frozen=True)
class Entry:
    name: str
    mode: int
    data: bytes = b""
    uid: int = 0
    gid: int = 0
    nlink: int = 1
    mtime: int = 0
    rdev_major: int = 0
    rdev_minor: int = 0
    ino: int = 0

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


class CpioWriter:
    """Append entries in order (parents before children), then close()."""

    def __init__(self, out: BinaryIO, mtime: int = 0) -> None:
        self.out = out
        self.mtime = mtime
        self._ino = 1
        self.count = 0
        self.bytes_written = 0
        self._closed = False

    def _write(self, name: str, mode: int, data: bytes = b"", nlink: int = 1,
               rdev: tuple[int, int] = (0, 0), uid: int = 0, gid: int = 0) -> None:
        if self._closed:
            raise CpioError("archive already closed")
        raw_name = name.encode() + b"\0"
        ino = 0 if name == TRAILER else self._ino
        self._ino += 1
        fields = (ino, mode, uid, gid, nlink, self.mtime, len(data),
                  0, 0, rdev[0], rdev[1], len(raw_name), 0)
        header = MAGIC + b"".join(b"%08x" % f for f in fields)
        chunk = header + raw_name + _pad(len(header) + len(raw_name)) + data + _pad(len(data))
        self.out.write(chunk)
        self.bytes_written += len(chunk)
        self.count += 1

    @staticmethod
    def _clean(name: str) -> str:
        name = name.strip("/")
        if not name or any(part in ("", ".", "..") for part in name.split("/")):
            raise CpioError(f"bad archive path {name!r}")
        return name

    def directory(self, name: str, perm: int = 0o755) -> None:
        self._write(self._clean(name), stat.S_IFDIR | perm, nlink=2)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._write(self._clean(name), stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._write(self._clean(name), stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._write(self._clean(name), stat.S_IFCHR | perm, rdev=(major, minor))

    def close(self) -> None:
        if not self._closed:
            self._write(TRAILER, 0, nlink=1)
            self._closed = True


def read(data: bytes) -> Iterator[Entry]:
    """Parse a newc archive (uncompressed) up to its trailer."""
    pos = 0
    while True:
        if pos + _HEADER_LEN > len(data):
            raise CpioError(f"truncated header at offset {pos}")
        header = data[pos:pos + _HEADER_LEN]
        if header[:6] != MAGIC:
            raise CpioError(f"bad magic {header[:6]!r} at offset {pos}")
        try:
            f = [int(header[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        except ValueError:
            raise CpioError(f"non-hex header field at offset {pos}") from None
        ino, mode, uid, gid, nlink, mtime, size, _, _, rmaj, rmin, namesize, _ = f
        if namesize < 1:
            raise CpioError(f"empty name at offset {pos}")
        name_end = pos + _HEADER_LEN + namesize
        raw_name = data[pos + _HEADER_LEN:name_end]
        if len(raw_name) != namesize or raw_name[-1:] != b"\0":
            raise CpioError(f"bad name at offset {pos}")
        name = raw_name[:-1].decode("utf-8", "surrogateescape")
        start = name_end + (-name_end % 4)
        end = start + size
        if end > len(data):
            raise CpioError(f"truncated data for {name!r}")
        if name == TRAILER:
            return
        yield Entry(name, mode, data[start:end], uid, gid, nlink, mtime, rmaj, rmin, ino)
        pos = end + (-end % 4)

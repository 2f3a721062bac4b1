"""Just enough ELF64 reading to find what a binary needs to run.

The initrd carries binaries from Debian packages; which shared libraries go
with them is decided by their DT_NEEDED entries and program interpreter,
read here from the files themselves (so nothing depends on the build host
having the tools installed or on running foreign binaries).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

SHT_DYNAMIC = 6
PT_INTERP = 3
DT_NEEDED = 1


class ElfError(ValueError):
    """Not an ELF64 little-endian file we can read."""


@dataclass(frozen=True)
class ElfInfo:
    interpreter: str | None
    needed: tuple[str, ...]


def is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def read_elf(path: Path) -> ElfInfo:
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or len(data) < 64:
        raise ElfError(f"{path}: not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise ElfError(f"{path}: only 64-bit little-endian ELF is supported")
    try:
        (phoff, shoff) = struct.unpack_from("<QQ", data, 0x20)
        (phentsize, phnum, shentsize, shnum) = struct.unpack_from("<HHHH", data, 0x36)
        interp = None
        for i in range(phnum):
            p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
            if p_type == PT_INTERP:
                interp = data[p_offset:p_offset + p_filesz].split(b"\0")[0].decode()
        sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
        needed: list[str] = []
        for sh in sections:
            if sh[1] != SHT_DYNAMIC:
                continue
            strtab = sections[sh[6]]
            str_off, str_size = strtab[4], strtab[5]
            for j in range(sh[5] // 16):
                tag, val = struct.unpack_from("<qQ", data, sh[4] + j * 16)
                if tag == 0:
                    break
                if tag == DT_NEEDED:
                    if val >= str_size:
                        raise ElfError(f"{path}: DT_NEEDED outside the string table")
                    start = str_off + val
                    needed.append(data[start:data.index(b"\0", start)].decode())
    except (struct.error, IndexError, ValueError) as exc:
        if isinstance(exc, ElfError):
            raise
        raise ElfError(f"{path}: malformed ELF ({exc})") from None
    return ElfInfo(interp, tuple(needed))


def read_section(data: bytes, name: str) -> bytes | None:
    """The contents of the named section of an ELF64 image (e.g. a .ko's .modinfo)."""
    if data[:4] != b"\x7fELF" or len(data) < 64 or data[4] != 2:
        raise ElfError("not an ELF64 file")
    try:
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
        sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
        names_off = sections[shstrndx][4]
        for sh in sections:
            start = names_off + sh[0]
            if data[start:data.index(b"\0", start)].decode() == name:
                return data[sh[4]:sh[4] + sh[5]]
    except (struct.error, IndexError, ValueError) as exc:
        raise ElfError(f"malformed ELF ({exc})") from None
    return None

"""The image's /etc/fstab: which file systems the installed system expects."""
from __future__ import annotations

import re
from dataclasses import dataclass

# File systems the master script knows how to create; others are left alone.
MAKEABLE = ("ext2", "ext3", "ext4", "xfs", "vfat", "swap")
_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class FstabEntry:
    source: str          # as written: UUID=..., LABEL=..., /dev/sda1, PARTUUID=...
    mountpoint: str      # "none" or "swap" for swap
    fstype: str
    options: str = "defaults"
    line: int = 0

    @property
    def is_swap(self) -> bool:
        return self.fstype == "swap"

    @property
    def key(self) -> tuple[str, str]:
        """('uuid'|'label'|'partuuid'|'partlabel'|'device', value) for mapping to a partition."""
        src = self.source
        for prefix, kind in (("UUID=", "uuid"), ("LABEL=", "label"), ("PARTUUID=", "partuuid"),
                             ("PARTLABEL=", "partlabel")):
            if src.upper().startswith(prefix):
                return kind, src[len(prefix):].strip('"')
        for prefix, kind in (("/dev/disk/by-uuid/", "uuid"), ("/dev/disk/by-label/", "label"),
                             ("/dev/disk/by-partuuid/", "partuuid"), ("/dev/disk/by-partlabel/", "partlabel")):
            if src.startswith(prefix):
                return kind, _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), src[len(prefix):])
        return "device", src

    @property
    def depth(self) -> int:
        """Mount order: '/' is 0, '/boot' 1, '/boot/efi' 2 (parents before children)."""
        return 0 if self.mountpoint == "/" else self.mountpoint.rstrip("/").count("/")


def _unescape(field: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_fstab(text: str) -> list[FstabEntry]:
    """Every well-formed line; comments, blank and short lines are skipped."""
    entries = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip() if raw.lstrip().startswith("#") else raw.strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) < 3:
            continue
        entries.append(FstabEntry(source=fields[0], mountpoint=_unescape(fields[1]),
                                  fstype=fields[2].lower(),
                                  options=fields[3] if len(fields) > 3 else "defaults", line=lineno))
    return entries

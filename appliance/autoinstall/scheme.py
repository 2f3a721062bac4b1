"""The golden client's disks: `sfdisk --dump` files and lsblk's disks.json.

Pure parsing, no I/O beyond the helpers that read a directory: text in,
dataclasses out, SchemeError (naming the file and line) for anything malformed.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

ESP_GPT = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
BIOS_BOOT_GPT = "21686148-6449-6E6F-744E-656564454649"
EXTENDED_DOS = {"5", "f", "85"}
ESP_DOS = "ef"
SWAP_TYPES = {"82", "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"}

# key=value (value possibly quoted, may hold commas) or a bare flag like `bootable`.
_FIELD = re.compile(r'\s*([A-Za-z][\w-]*)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^,]*))?\s*(?:,|$)')
_DEVICE = re.compile(r"^/dev/[A-Za-z0-9_.:/+-]{1,64}$")  # it lands in shell code
_GROW = re.compile(r"^#\s*(?:si-)?grow\s*[:=]\s*(\S+)\s*$")


class SchemeError(ValueError):
    """A partition scheme or disks.json cannot be understood."""


@dataclass
class Partition:
    number: int
    start: int                      # in sectors of the golden disk
    size: int
    type: str                       # "83", "ef", or a GPT type GUID (upper case)
    attrs: str                      # the rest of the sfdisk line, given back to sfdisk verbatim
    kind: str = "primary"           # primary | extended | logical
    uuid: str | None = None         # GPT partition UUID
    name: str | None = None         # GPT partition name
    bootable: bool = False
    device: str = ""                # as the dump named it, e.g. /dev/vda1

    @property
    def end(self) -> int:
        return self.start + self.size

    @property
    def is_esp(self) -> bool:
        return self.type in (ESP_GPT, ESP_DOS)

    @property
    def is_bios_boot(self) -> bool:
        return self.type == BIOS_BOOT_GPT


@dataclass
class Disk:
    device: str                     # the golden client's name, e.g. /dev/vda
    label: str                      # dos | gpt
    partitions: list[Partition] = field(default_factory=list)
    label_id: str | None = None
    first_lba: int | None = None
    sector_size: int = 512
    size_bytes: int | None = None   # from disks.json or last-lba, when known
    grow: int | None = None         # partition number that takes extra space

    def partition(self, number: int) -> Partition | None:
        return next((p for p in self.partitions if p.number == number), None)

    def default_grow(self) -> int | None:
        """The scheme's marked partition, else the last one that can grow."""
        if self.grow is not None:
            return self.grow
        candidates = [p for p in self.partitions if p.kind != "extended" and not p.is_bios_boot]
        return max(candidates, key=lambda p: p.end).number if candidates else None


def partition_number(device: str) -> int:
    m = re.search(r"(\d+)$", device)
    if not m:
        raise SchemeError(f"{device!r} does not end in a partition number")
    return int(m.group(1))


def _fields(text: str, where: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _FIELD.match(text, pos)
        if not m or m.end() == pos:
            raise SchemeError(f"{where}: cannot read {text[pos:]!r}")
        key, value = m.group(1), m.group(2)
        if value is not None:
            value = value.strip()
            if value.startswith('"') and value.endswith('"') and len(value) >= 2:
                value = value[1:-1]
        out[key] = value
        pos = m.end()
    return out


def _field_text(key: str, value: str | None) -> str:
    if value is None:
        return key
    if key in ("name", "attrs") or any(c in value for c in ' ,"'):
        return f'{key}="{value}"'
    return f"{key}={value}"


def parse_sfdisk(text: str, source: str = "sfdisk dump") -> Disk:
    """Parse `sfdisk --dump` output (label dos or gpt)."""
    header: dict[str, str] = {}
    parts: list[Partition] = []
    grow: str | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = f"{source} line {lineno}"
        if not line:
            continue
        if line.startswith("#"):
            m = _GROW.match(line)
            if m:
                grow = m.group(1)
            continue
        if " : " in line or (":" in line and line.startswith("/dev/")):
            device, _, rest = line.partition(":")
            fields = _fields(rest, where)
            try:
                start = int(fields.get("start") or "")
                size = int(fields.get("size") or "0")
            except ValueError:
                raise SchemeError(f"{where}: start/size are not numbers") from None
            if start < 0 or size < 0:
                raise SchemeError(f"{where}: negative start or size")
            ptype = (fields.get("type") or fields.get("Id") or "83").strip()
            ptype = ptype.upper() if len(ptype) > 2 else ptype.lower().lstrip("0") or "0"
            attrs = ", ".join(_field_text(k, v) for k, v in fields.items() if k not in ("start", "size"))
            parts.append(Partition(number=partition_number(device.strip()), start=start, size=size,
                                   type=ptype, attrs=attrs, uuid=fields.get("uuid"),
                                   name=fields.get("name"), bootable="bootable" in fields,
                                   device=device.strip()))
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise SchemeError(f"{where}: not a header line or partition line: {line[:60]!r}")
        header[key.strip()] = value.strip()
    label = header.get("label")
    if label not in ("dos", "gpt"):
        raise SchemeError(f"{source}: label {label!r} is not 'dos' or 'gpt'")
    if header.get("unit", "sectors") != "sectors":
        raise SchemeError(f"{source}: unit {header['unit']!r} is not 'sectors'")
    try:
        sector_size = int(header.get("sector-size", "512"))
        first_lba = int(header["first-lba"]) if "first-lba" in header else None
        last_lba = int(header["last-lba"]) if "last-lba" in header else None
    except ValueError:
        raise SchemeError(f"{source}: sector-size/first-lba/last-lba are not numbers") from None
    for name in [header.get("device", "")] + [p.device for p in parts]:
        if name and not _DEVICE.match(name):
            raise SchemeError(f"{source}: {name!r} is not a device name like /dev/sda")
    disk = Disk(device=header.get("device", ""), label=label, partitions=parts,
                label_id=header.get("label-id"), first_lba=first_lba, sector_size=sector_size)
    if last_lba is not None:
        disk.size_bytes = (last_lba + 34) * sector_size
    numbers = [p.number for p in parts]
    if len(set(numbers)) != len(numbers):
        raise SchemeError(f"{source}: a partition number appears twice")
    if label == "dos":
        for p in parts:
            if p.type in EXTENDED_DOS:
                p.kind = "extended"
            elif p.number > 4:
                p.kind = "logical"
    if grow:
        try:
            disk.grow = partition_number(grow) if grow.startswith("/") else int(grow)
        except (SchemeError, ValueError):
            raise SchemeError(f"{source}: grow marker {grow!r} names no partition") from None
        if disk.partition(disk.grow) is None or disk.partition(disk.grow).kind == "extended":
            raise SchemeError(f"{source}: grow marker names partition {disk.grow}, which the scheme has not")
    return disk


def disk_name_from_file(path: Path) -> str:
    """`_dev_sda.sfdisk` or `sda.sfdisk` -> /dev/sda (prepareclient replaced '/' by '_')."""
    stem = path.name[: -len(".sfdisk")] if path.name.endswith(".sfdisk") else path.name
    name = stem.replace("_", "/")
    return name if name.startswith("/dev/") else "/dev/" + name.lstrip("/")


@dataclass
class BlockInfo:
    """What lsblk knew about one partition of the golden client."""
    path: str
    fstype: str | None = None
    uuid: str | None = None
    label: str | None = None
    partuuid: str | None = None
    partlabel: str | None = None
    mountpoints: tuple[str, ...] = ()


def parse_disks_json(text: str, source: str = "disks.json") -> tuple[dict[str, int], list[BlockInfo]]:
    """lsblk -J -b -O output -> ({disk path: size bytes}, [partition/fs info])."""
    try:
        data = json.loads(text)
        devices = data["blockdevices"]
        if not isinstance(devices, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise SchemeError(f"{source}: not lsblk -J output (no blockdevices list)") from None
    sizes: dict[str, int] = {}
    infos: list[BlockInfo] = []

    def path_of(dev: dict) -> str:
        p = dev.get("path") or dev.get("name") or ""
        return p if p.startswith("/dev/") else "/dev/" + p

    def walk(dev: dict) -> None:
        if not isinstance(dev, dict):
            return
        if dev.get("type") == "disk":
            try:
                sizes[path_of(dev)] = int(dev.get("size") or 0)
            except (TypeError, ValueError):
                pass
        mps = dev.get("mountpoints") or ([dev["mountpoint"]] if dev.get("mountpoint") else [])
        infos.append(BlockInfo(path=path_of(dev), fstype=dev.get("fstype"), uuid=dev.get("uuid"),
                               label=dev.get("label"), partuuid=dev.get("partuuid"),
                               partlabel=dev.get("partlabel"),
                               mountpoints=tuple(m for m in mps if m)))
        for child in dev.get("children") or []:
            walk(child)

    for dev in devices:
        walk(dev)
    return sizes, infos


def read_schemes(directory: Path) -> tuple[list[Disk], list[BlockInfo]]:
    """Every *.sfdisk in a partitionschemes directory, plus disks.json when present."""
    disks = []
    for path in sorted(directory.glob("*.sfdisk")):
        disk = parse_sfdisk(path.read_text(errors="replace"), source=path.name)
        if not disk.device:
            disk.device = disk_name_from_file(path)
        if not _DEVICE.match(disk.device):
            raise SchemeError(f"{path.name}: {disk.device!r} is not a device name like /dev/sda")
        disks.append(disk)
    infos: list[BlockInfo] = []
    js = directory / "disks.json"
    if js.is_file():
        sizes, infos = parse_disks_json(js.read_text(errors="replace"), source=str(js.name))
        for disk in disks:
            disk.size_bytes = sizes.get(disk.device, disk.size_bytes)
    disks.sort(key=lambda d: d.device)
    return disks, infos

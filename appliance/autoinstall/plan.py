"""From an image tree to an install plan: which disk, partition, file system and mount.

Reads the image's partition schemes, disks.json, mounted_filesystems and
/etc/fstab, maps every fstab entry the script must create to a golden-client
partition, and notes what the image uses for networking and booting.
Problems that make an install impossible are collected, not raised, so the
master script can still be written (failing clearly when run) and edited.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .fstab import MAKEABLE, FstabEntry, parse_fstab
from .scheme import BlockInfo, Disk, Partition, SchemeError, read_schemes

_IFNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,15}$")  # it lands in shell code unquoted
SCHEMES_DIR = "etc/systemimager/partitionschemes"
MIB = 1024 * 1024
MIN_FS_BYTES = {"xfs": 300 * MIB, "ext4": 32 * MIB, "ext3": 32 * MIB, "ext2": 16 * MIB, "vfat": 33 * MIB}


@dataclass
class FsPlan:
    entry: FstabEntry
    disk: int                      # index into InstallPlan.disks
    partition: Partition
    fstype: str
    uuid: str | None = None        # the golden client's, reused so references in the image hold
    label: str | None = None
    data_bytes: int = 0            # bytes of the image that land on this file system

    @property
    def mountpoint(self) -> str:
        return self.entry.mountpoint


@dataclass
class DiskPlan:
    var: str                       # DISK0, DISK1, ...
    disk: Disk
    grow: int | None
    min_grow_sectors: int = 2048


@dataclass
class InstallPlan:
    image: str
    disks: list[DiskPlan] = field(default_factory=list)
    filesystems: list[FsPlan] = field(default_factory=list)   # mount order, swap excluded
    swaps: list[FsPlan] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)            # left alone, said in the script
    problems: list[str] = field(default_factory=list)         # the script fails with these
    ip_method: str = "static_dhcp"
    post_install: str = "reboot"
    net_ifupdown: bool = False
    net_networkd: bool = False
    net_iface: str | None = None
    ifupdown_sources: list[str] = field(default_factory=list)
    golden_hostname: str | None = None
    bootloader: str | None = None  # what the image carries: grub | extlinux | None
    rsync_port: int = 873

    @property
    def esp(self) -> FsPlan | None:
        return next((f for f in self.filesystems if f.partition.is_esp or
                     (f.fstype == "vfat" and f.mountpoint in ("/boot/efi", "/efi"))), None)

    @property
    def boot_disk(self) -> DiskPlan | None:
        for mp in ("/boot", "/"):
            fs = next((f for f in self.filesystems if f.mountpoint == mp), None)
            if fs is not None:
                return self.disks[fs.disk]
        return self.disks[0] if self.disks else None

    @property
    def bios_boot_partition(self) -> bool:
        """GRUB can go in for BIOS boot: an MBR disk has the gap after its MBR, a GPT disk
        needs a BIOS boot partition (without one, a GPT image boots by UEFI only)."""
        disk = self.boot_disk
        return disk is not None and (disk.disk.label == "dos" or any(p.is_bios_boot for p in disk.disk.partitions))

    @property
    def all_filesystems(self) -> list[FsPlan]:
        return self.filesystems + self.swaps


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def _mounted(text: str | None) -> dict[str, str]:
    """/proc/mounts copy -> {mountpoint: device} for block devices."""
    out: dict[str, str] = {}
    for line in (text or "").splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0].startswith("/dev/"):
            out.setdefault(fields[1].replace("\\040", " "), fields[0])
    return out


def _data_bytes(root: Path, mountpoints: list[str]) -> dict[str, int]:
    """Bytes (rounded to 4 KiB per file) under each mount point, nested mounts excluded."""
    totals = {mp: 0 for mp in mountpoints}
    others = {os.path.normpath(str(root) + mp) for mp in mountpoints if mp != "/"}
    for mp in mountpoints:
        top = os.path.normpath(str(root) + mp) if mp != "/" else str(root)
        if not os.path.isdir(top):
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in others]
            for name in filenames + dirnames:
                try:
                    st = os.lstat(os.path.join(dirpath, name))
                except OSError:
                    continue
                totals[mp] += (st.st_size + 4095) // 4096 * 4096 if name in filenames else 4096
    return totals


def _interfaces(text: str | None) -> tuple[str | None, list[str]]:
    iface, sources = None, []
    for line in (text or "").splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0] in ("source", "source-directory"):
            sources.append(line.strip())
        elif fields[0] in ("iface", "auto", "allow-hotplug") and len(fields) > 1 and iface is None:
            name = fields[1]
            if name != "lo" and not name.startswith("lo:") and _IFNAME.match(name):
                iface = name
    return iface, sources


def build_plan(image: str, root: Path, *, ip_method: str | None = None,
               post_install: str | None = None, rsync_port: int = 873) -> InstallPlan:
    plan = InstallPlan(image=image, ip_method=ip_method or "static_dhcp",
                       post_install=post_install or "reboot", rsync_port=rsync_port)
    schemes = root / SCHEMES_DIR
    disks: list[Disk] = []
    infos: list[BlockInfo] = []
    if not schemes.is_dir():
        plan.problems.append(f"the image has no partition schemes ({'/' + SCHEMES_DIR}); run prepareclient "
                             "on the golden client and getimage again, or write the sfdisk lines below")
    else:
        try:
            disks, infos = read_schemes(schemes)
        except (SchemeError, OSError) as exc:
            plan.problems.append(f"partition scheme: {exc}")
        if not disks and not plan.problems:
            plan.problems.append(f"no *.sfdisk files in /{SCHEMES_DIR}")
    for i, disk in enumerate(disks):
        plan.disks.append(DiskPlan(var=f"DISK{i}", disk=disk, grow=disk.default_grow()))

    by_device: dict[str, tuple[int, Partition]] = {}
    for i, dp in enumerate(plan.disks):
        for p in dp.disk.partitions:
            by_device[p.device] = (i, p)
    info_by: dict[tuple[str, str], BlockInfo] = {}
    for info in infos:
        for kind in ("uuid", "label", "partuuid", "partlabel"):
            value = getattr(info, kind)
            if value:
                info_by.setdefault((kind, value.lower() if kind.endswith("uuid") else value), info)
    info_by_path = {i.path: i for i in infos}
    mounted = _mounted(_read(root / "etc/systemimager/mounted_filesystems"))

    fstab_text = _read(root / "etc/fstab")
    if fstab_text is None:
        plan.problems.append("the image has no /etc/fstab")
    entries = parse_fstab(fstab_text or "")
    seen_parts: dict[tuple[int, int], str] = {}
    for entry in entries:
        fstype = entry.fstype
        if fstype not in MAKEABLE and fstype != "auto":
            continue  # proc, tmpfs, nfs, bind mounts...: the installed system handles them
        if "bind" in entry.options.split(","):
            continue
        kind, value = entry.key
        path = None
        if kind == "device":
            path = value
        else:
            info = info_by.get((kind, value.lower() if kind.endswith("uuid") else value))
            if info:
                path = info.path
            elif kind in ("partuuid", "partlabel"):
                for dev, (_, p) in by_device.items():
                    if (kind == "partuuid" and (p.uuid or "").lower() == value.lower()) or \
                            (kind == "partlabel" and p.name == value):
                        path = dev
        if (path is None or path not in by_device) and not entry.is_swap and entry.mountpoint in mounted:
            path = mounted[entry.mountpoint]
        where = f"fstab line {entry.line} ({entry.source} {entry.mountpoint})"
        if path is None or path not in by_device:
            if path and (path.startswith("/dev/mapper/") or path.startswith("/dev/md")):
                text = f"{where}: LVM/RAID devices are not created by this script"
            else:
                text = f"{where}: no partition of the golden client's schemes matches"
            (plan.notes if entry.is_swap or "noauto" in entry.options.split(",") else plan.problems).append(text)
            continue
        disk_i, part = by_device[path]
        if (disk_i, part.number) in seen_parts:
            plan.problems.append(f"{where}: {path} is already used for {seen_parts[(disk_i, part.number)]}")
            continue
        seen_parts[(disk_i, part.number)] = entry.mountpoint
        info = info_by_path.get(path)
        if fstype == "auto":
            fstype = (info.fstype if info else None) or ""
            if fstype not in MAKEABLE:
                plan.problems.append(f"{where}: type 'auto' and the golden client's type is unknown")
                continue
        uuid = value if kind == "uuid" else (info.uuid if info else None)
        label = value if kind == "label" else (info.label if info else None)
        fs = FsPlan(entry=entry, disk=disk_i, partition=part, fstype=fstype, uuid=uuid, label=label)
        (plan.swaps if entry.is_swap else plan.filesystems).append(fs)

    plan.filesystems.sort(key=lambda f: (f.entry.depth, f.mountpoint))
    if plan.filesystems and plan.filesystems[0].mountpoint != "/" and not plan.problems:
        plan.problems.append("the image's fstab has no root file system (/) on a partitioned disk")

    # Without a marker in the scheme, the last partition holding a file system grows
    # (not a trailing swap or ESP); a disk with no file system keeps its last partition.
    for i, dp in enumerate(plan.disks):
        if dp.disk.grow is None:
            holders = [f.partition for f in plan.filesystems if f.disk == i and not f.partition.is_esp]
            if holders:
                dp.grow = max(holders, key=lambda p: p.end).number

    # How small the growing partition may become: the data that lands on it, with room.
    data = _data_bytes(root, [f.mountpoint for f in plan.filesystems])
    for fs in plan.filesystems:
        fs.data_bytes = data.get(fs.mountpoint, 0)
    for dp in plan.disks:
        if dp.grow is None:
            continue
        fs = next((f for f in plan.all_filesystems if f.disk == plan.disks.index(dp)
                   and f.partition.number == dp.grow), None)
        need = MIB
        if fs is not None and not fs.entry.is_swap:
            need = max(int(fs.data_bytes * 1.2) + 64 * MIB, MIN_FS_BYTES.get(fs.fstype, 16 * MIB))
        elif fs is not None:
            need = 16 * MIB
        dp.min_grow_sectors = -(-need // dp.disk.sector_size)

    plan.golden_hostname = ((_read(root / "etc/hostname") or "").strip().split() or [None])[0]
    plan.net_ifupdown = (root / "etc/network/interfaces").is_file()
    plan.net_iface, plan.ifupdown_sources = _interfaces(_read(root / "etc/network/interfaces"))
    netd = root / "etc/systemd/network"
    plan.net_networkd = (netd.is_dir() and any(netd.glob("*.network"))) or os.path.lexists(
        root / "etc/systemd/system/multi-user.target.wants/systemd-networkd.service")
    if any((root / p).exists() for p in ("usr/sbin/grub-install", "usr/sbin/grub2-install")):
        plan.bootloader = "grub"
    elif any(os.path.lexists(root / p) for p in ("usr/bin/extlinux", "sbin/extlinux", "usr/sbin/extlinux")):
        plan.bootloader = "extlinux"
    return plan

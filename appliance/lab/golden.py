"""The lab's golden client: a small but real system, built from Debian packages.

It has a Debian kernel with its own initramfs, busybox for userland, GRUB
(BIOS and UEFI) with an update-grub, and a network configuration: enough that
an installed copy boots by itself and says who it is on the serial console
("SI-GOLDEN-BOOTED hostname=... ip=..."). It lives on a GPT disk image (BIOS
boot partition, EFI system partition, ext4 root) attached as a loop device, so
prepareclient records a real partition scheme from it.
"""
from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from bootimages import debs
from bootimages.cpio import CpioWriter
from bootimages.modules import ModuleIndex, load_bytes

from services.debian_packages import program_path

from .loopdev import loop_device, partition
from .netns import run_checked

FILES = Path(__file__).with_name("golden_files")
MODULES = ("crc32c_generic", "virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net", "ahci", "sd_mod",
           "ext4", "af_packet", "e1000", "efivarfs")
GRUB_BINARIES = ("grub-install", "grub-probe", "grub-editenv", "grub-mkimage", "grub-mkrelpath")
GRUB_DIRS = ("/usr/lib/grub/i386-pc", "/usr/lib/grub/x86_64-efi")
# Debian's signed shim and GRUB (the appliance's own packages for network boot):
# with them in the image, the install puts a Secure Boot chain on the ESP.
SIGNED_DIRS = ("/usr/lib/grub/x86_64-efi-signed", "/usr/lib/shim")
DISK_LAYOUT = """label: gpt
size=1MiB, type=21686148-6449-6E6F-744E-656564454649, name=biosboot
size=32MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root
"""


@dataclass(frozen=True)
class Golden:
    device: str        # the loop device holding the golden disk
    root: Path         # where its root file system is mounted
    kernel_version: str


def _run(*cmd: str, **kw) -> str:
    return run_checked(list(cmd), **kw).stdout


def _copy_with_libraries(binary: str, root: Path) -> None:
    """Copy a host binary and the shared libraries ldd says it needs."""
    for path in [binary] + [line.split("=>")[-1].split("(")[0].strip()
                            for line in _run("ldd", binary).splitlines() if "/" in line]:
        if not path:
            continue
        real = Path(os.path.realpath(path))
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            shutil.copy2(real, dest)


def _merged_usr(root: Path) -> None:
    for sub in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for link in ("bin", "sbin", "lib", "lib64"):
        if not (root / link).exists():
            os.symlink(f"usr/{link}", root / link)


def _busybox(root: Path) -> list[str]:
    shutil.copy2("/bin/busybox", root / "usr/bin/busybox")
    applets = _run("/bin/busybox", "--list-full").split()
    for applet in applets:
        # merged /usr: bin/x and sbin/x live under usr/
        dest = root / (applet if applet.startswith("usr/") else "usr/" + applet)
        if not dest.exists() and not dest.is_symlink():
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.symlink("/usr/bin/busybox", dest)
    return applets


def _kernel(workdir: Path) -> tuple[str, Path, Path]:
    """(version, vmlinuz, modules directory) of Debian's current kernel package, unpacked."""
    version = debs.current_kernel_version()
    deb = debs.DebCache(debs.default_cache_dir()).fetch(f"linux-image-{version}")
    vmlinuz, moddir = debs.unpack_kernel(deb, workdir / "kernel-package", version)
    return version, vmlinuz, moddir


def _modules(moddir: Path) -> dict[str, bytes]:
    index = ModuleIndex.scan(moddir)
    present = [m for m in MODULES if m in index.paths or m in index.builtin]
    order, _ = index.resolve(present)
    out = {}
    for rel in order:
        plain = rel
        for suffix in (".xz", ".gz", ".zst"):
            plain = plain.removesuffix(suffix)
        out[plain] = load_bytes(moddir / rel)
    return out


def _initramfs(path: Path, version: str, modules: dict[str, bytes], dep: str, load: list[str]) -> None:
    with gzip.open(path, "wb", compresslevel=6) as raw:
        cpio = CpioWriter(raw)
        for d in ("usr", "usr/bin", "usr/sbin", "usr/lib", "proc", "sys", "dev", "etc", "newroot", "tmp"):
            cpio.directory(d)
        for link in ("bin", "sbin", "lib"):
            cpio.symlink(link, f"usr/{link}")
        cpio.file("usr/bin/busybox", Path("/bin/busybox").read_bytes(), 0o755)
        for applet in _run("/bin/busybox", "--list").split():
            if applet != "busybox":
                cpio.symlink(f"usr/bin/{applet}", "busybox")
        cpio.file("init", (FILES / "initrd-init").read_bytes(), 0o755)
        cpio.file("etc/modules", "\n".join(load).encode() + b"\n")
        cpio.directory(f"usr/lib/modules")
        cpio.directory(f"usr/lib/modules/{version}")
        for rel, data in modules.items():
            parts = rel.split("/")
            for i in range(1, len(parts)):
                cpio.directory(f"usr/lib/modules/{version}/" + "/".join(parts[:i]))
            cpio.file(f"usr/lib/modules/{version}/{rel}", data)
        cpio.file(f"usr/lib/modules/{version}/modules.dep", dep.encode())
        cpio.char_device("dev/console", 5, 1)
        cpio.close()


def build_tree(root: Path, workdir: Path) -> str:
    """Fill `root` with the golden system; returns its kernel version."""
    _merged_usr(root)
    for d in ("etc/network/if-pre-up.d", "etc/network/if-up.d", "etc/network/if-down.d",
              "etc/network/if-post-down.d", "proc", "sys", "dev", "run", "tmp", "boot/grub", "boot/efi", "root", "home/user",
              "var/log", "etc/udhcpc", "usr/share/grub"):
        (root / d).mkdir(parents=True, exist_ok=True)
    _busybox(root)
    version, vmlinuz, moddir = _kernel(workdir)
    shutil.copy2(vmlinuz, root / "boot" / f"vmlinuz-{version}")
    modules = _modules(moddir)
    for rel, data in modules.items():
        dest = root / "usr/lib/modules" / version / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    _run("depmod", "-b", str(root), version)
    dep = (root / "usr/lib/modules" / version / "modules.dep").read_text()
    load = [Path(rel).name.removesuffix(".ko") for rel in modules]
    _initramfs(root / "boot" / f"initrd.img-{version}", version, modules, dep, load)
    for binary in GRUB_BINARIES:
        _copy_with_libraries(program_path(binary), root)
    for d in GRUB_DIRS:
        shutil.copytree(d, root / d.lstrip("/"), dirs_exist_ok=True)
    for d in SIGNED_DIRS:
        if Path(d).is_dir():
            shutil.copytree(d, root / d.lstrip("/"), dirs_exist_ok=True)
    for name, dest in (("init", "sbin/init"), ("update-grub", "usr/sbin/update-grub"),
                       ("udhcpc.script", "etc/udhcpc/default.script")):
        target = root / dest
        if target.exists() or target.is_symlink():
            target.unlink()
        shutil.copy2(FILES / name, target)
    shutil.copy2("/etc/mke2fs.conf", root / "etc/mke2fs.conf")
    etc = root / "etc"
    (etc / "hostname").write_text("golden\n")
    (etc / "hosts").write_text("127.0.0.1 localhost\n127.0.1.1 golden\n")
    (etc / "os-release").write_text('NAME="SystemImager lab golden"\nID=si-golden\n')
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\nuser:x:1000:\n")
    (etc / "modules").write_text("virtio_net\naf_packet\ne1000\nefivarfs\n")
    (etc / "network/interfaces").write_text("auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n")
    (root / "home/user/notes.txt").write_text("a file in a home directory\n")
    os.chown(root / "home/user/notes.txt", 1000, 1000)
    return version


@contextmanager
def gpt_root_disk(workdir: Path, size: str, label: str = "golden-root") -> Iterator[tuple[str, Path]]:
    """An empty golden disk (DISK_LAYOUT: BIOS boot, ESP, ext4 root), loop-attached, its root
    mounted; yields (device, mount point); unmounted and detached after."""
    workdir.mkdir(parents=True, exist_ok=True)
    image = workdir / "golden.disk.raw"
    image.unlink(missing_ok=True)
    _run("truncate", "-s", size, str(image))
    _run("sfdisk", "-q", str(image), input=DISK_LAYOUT)
    mnt = workdir / "golden-root"
    mnt.mkdir(exist_ok=True)
    with loop_device(image) as dev:
        _run("mkfs.vfat", "-F", "32", "-n", "EFI", partition(dev, 2))
        _run("mkfs.ext4", "-q", "-L", label, partition(dev, 3))
        _run("mount", partition(dev, 3), str(mnt))
        try:
            yield dev, mnt
        finally:
            subprocess.run(["umount", str(mnt)], capture_output=True)


def write_fstab(dev: str, root: Path) -> None:
    """The golden system's /etc/fstab: its root and ESP on gpt_root_disk's partitions, by UUID."""
    uuid = {p: _run("blkid", "-o", "value", "-s", "UUID", partition(dev, p)).strip() for p in (2, 3)}
    (root / "etc/fstab").write_text(
        f"UUID={uuid[3]} / ext4 errors=remount-ro 0 1\n"
        f"UUID={uuid[2]} /boot/efi vfat umask=0077,nofail 0 1\n")


@contextmanager
def golden_disk(workdir: Path, size: str = "256M") -> Iterator[Golden]:
    """A loop-attached golden disk with its root mounted; unmounted and detached after."""
    with gpt_root_disk(workdir, size) as (dev, mnt):
        version = build_tree(mnt, workdir)
        write_fstab(dev, mnt)
        yield Golden(dev, mnt, version)

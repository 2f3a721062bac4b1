"""Lay out the boot root from Debian's packages (what `si mkbootserver` does).

Copies only what changed (compare bytes, write to a temporary name, rename), so
running it at every `si up` is cheap and never leaves a half-written loader.
"""
from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from services import bootloaders
from services.bootloaders import BootFile

from . import localboot
from .decide import INITRD, KERNEL


# Every file of every loader in the table; those the configured loaders need
# are required, the others are laid out when their package is installed.
BOOT_FILES: tuple[BootFile, ...] = bootloaders.all_files()


class BootLayoutError(RuntimeError):
    """A required boot file is missing; the message names its Debian package."""


@dataclass
class LayoutReport:
    copied: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    missing: list[BootFile] = field(default_factory=list)     # required ones (non-strict runs)
    skipped: list[BootFile] = field(default_factory=list)     # optional ones
    kernel: Path | None = None                                # the autoinstall pair, if built
    initrd: Path | None = None
    localboot: str = ""                                       # built | unchanged | why it was not

    def notes(self, optional: bool = True) -> list[str]:
        """What is wrong or absent, one line each; optional: also the optional files not laid out."""
        out = [f"missing {f.dest}: install Debian package {f.package} (apt-get install {f.package})"
               for f in self.missing]
        out += [f"skipped {f.dest} (optional): Debian package {f.package} is not installed"
                for f in self.skipped if optional]
        if self.localboot not in ("built", "unchanged"):
            out.append(f"UEFI machines booting their disk go through every network boot option first: "
                       f"{self.localboot}")
        if self.kernel is None or self.initrd is None:
            out.append(f"autoinstall {KERNEL} / {INITRD} not built yet: run 'si mkbootimage'")
        return out


def _missing_message(files: list[BootFile], source_root: Path) -> str:
    packages = sorted({f.package for f in files})
    names = ", ".join(str(source_root / f.source) for f in files)
    return (f"boot files missing: {names}; install Debian package(s) {' '.join(packages)} "
            f"(apt-get install {' '.join(packages)})")


def _copy_if_changed(src: Path, dest: Path) -> bool:
    if dest.is_file() and dest.stat().st_size == src.stat().st_size and filecmp.cmp(src, dest, shallow=False):
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def lay_out(boot_root: Path, source_root: Path = Path("/"), strict: bool = True, *,
            needed: frozenset[str]) -> LayoutReport:
    """Copy the loaders into boot_root. needed: the dests that are required (the configured
    loaders' files, bootloaders.needed()); strict: a missing one raises, before anything is copied."""
    report = LayoutReport()
    present = []
    for f in BOOT_FILES:
        if (source_root / f.source).is_file():
            present.append(f)
        elif f.dest in needed:
            report.missing.append(f)
        else:
            report.skipped.append(f)
    if strict and report.missing:
        raise BootLayoutError(_missing_message(report.missing, source_root))
    for f in present:
        changed = _copy_if_changed(source_root / f.source, boot_root / f.dest)
        (report.copied if changed else report.unchanged).append(f.dest)
    try:
        report.localboot = "built" if localboot.build(boot_root / localboot.NAME, source_root) else "unchanged"
    except (localboot.LocalbootUnavailable, OSError, subprocess.CalledProcessError) as exc:
        report.localboot = str(exc)
    kernel, initrd = boot_root / KERNEL, boot_root / INITRD
    report.kernel = kernel if kernel.is_file() else None
    report.initrd = initrd if initrd.is_file() else None
    return report

"""si mkbootserver: lay out the network boot root from Debian's boot loader packages."""
from __future__ import annotations

from pathlib import Path

from ..bootconfig import BootLayoutError, lay_out, needed_files
from ._common import OperationFailed, add_config_arg, load_config


def register(sub) -> None:
    p = sub.add_parser("mkbootserver", help="copy the network boot loaders (iPXE, pxelinux, syslinux.efi, shim and GRUB) into the boot root")
    add_config_arg(p)
    p.add_argument("--source-root", type=Path, default=Path("/"),
                   help="where Debian's boot packages are installed (default /)")
    p.set_defaults(func=mkbootserver)


def mkbootserver(args) -> int:
    cfg = load_config(args)
    try:
        report = lay_out(cfg.boot_root, args.source_root, needed=needed_files(cfg))
    except BootLayoutError as exc:
        raise OperationFailed(str(exc)) from None
    print(f"boot root {cfg.boot_root}: {len(report.copied)} file(s) copied, {len(report.unchanged)} unchanged")
    for dest in report.copied:
        print(f"  copied    {dest}")
    for dest in report.unchanged:
        print(f"  unchanged {dest}")
    if report.localboot in ("built", "unchanged"):
        print(f"  {report.localboot} localboot.efi (UEFI machines' way to their own disk)")
    if report.kernel and report.initrd:
        print(f"autoinstall kernel and initrd present: {report.kernel}, {report.initrd}")
    for note in report.notes():
        print(f"note: {note}")
    return 0

"""si mkautoinstallcd: an autoinstall CD/USB image for machines that cannot PXE boot."""
from __future__ import annotations

from pathlib import Path

from ..bootmedia import MediaError, MediaSpec, build_iso
from ._common import OperationFailed, add_config_arg, load_config


def register(sub) -> None:
    p = sub.add_parser("mkautoinstallcd",
                       help="make a hybrid BIOS/UEFI autoinstall ISO (also dd-able to a USB stick)")
    add_media_args(p, "the ISO to write")
    p.set_defaults(func=mkautoinstallcd)


def add_media_args(p, out_help: str) -> None:
    """What an autoinstall medium takes (this command's and mkautoinstallusb's)."""
    add_config_arg(p)
    p.add_argument("--out-file", "-o", type=Path, required=True, help=out_help)
    p.add_argument("--local-cfg", type=Path, help="put this local.cfg on the medium (overrides DHCP)")
    p.add_argument("--kernel", type=Path, help="default: <boot root>/systemimager/kernel")
    p.add_argument("--initrd", type=Path, help="default: <boot root>/systemimager/initrd.img")
    p.add_argument("--append", default="", help="extra kernel command line")
    p.add_argument("--serial", metavar="TTY", help="serial console, e.g. ttyS0,115200n8")


def mkautoinstallcd(args) -> int:
    cfg = load_config(args)
    kernel = args.kernel or cfg.boot_root / "systemimager" / "kernel"
    initrd = args.initrd or cfg.boot_root / "systemimager" / "initrd.img"
    cmdline = [f"IMAGESERVER={cfg.hint_address}", f"SI_HTTP_PORT={cfg.http.port}"]
    if args.serial:
        cmdline += ["console=tty0", f"console={args.serial}"]
    if args.append:
        cmdline.append(args.append)
    try:
        out = build_iso(MediaSpec(kernel, initrd, args.out_file, " ".join(cmdline), args.local_cfg))
    except MediaError as exc:
        raise OperationFailed(str(exc)) from None
    print(f"{out}: {out.stat().st_size / 2**20:.1f} MiB; boots BIOS and UEFI, from CD or dd'd to USB")
    return 0

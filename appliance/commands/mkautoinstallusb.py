"""si mkautoinstallusb: the USB counterparts of the manual's boot media: a whole autoinstall
stick (the hybrid image mkautoinstallcd makes, which boots BIOS and UEFI from a stick), or with
--config-only a small stick image with nothing but local.cfg, as mkautoinstalldiskette made."""
from __future__ import annotations

from pathlib import Path

from ..bootmedia import MediaError, build_config_stick
from ._common import CliError, OperationFailed, add_config_arg


def register(sub) -> None:
    p = sub.add_parser("mkautoinstallusb",
                       help="make an autoinstall USB stick image, or (--config-only) a local.cfg stick")
    add_config_arg(p)
    p.add_argument("--out-file", "-o", type=Path, required=True, help="the image to write (dd it to the stick)")
    p.add_argument("--local-cfg", type=Path, help="put this local.cfg on the stick (overrides DHCP)")
    p.add_argument("--config-only", action="store_true",
                   help="only local.cfg, on a 1.44 MB FAT image: boot the machine from the network, a CD or "
                        "its disk as usual, with this stick in")
    p.add_argument("--kernel", type=Path, help="default: <boot root>/systemimager/kernel")
    p.add_argument("--initrd", type=Path, help="default: <boot root>/systemimager/initrd.img")
    p.add_argument("--append", default="", help="extra kernel command line")
    p.add_argument("--serial", metavar="TTY", help="serial console, e.g. ttyS0,115200n8")
    p.set_defaults(func=mkautoinstallusb)


def mkautoinstallusb(args) -> int:
    if args.config_only:
        if args.local_cfg is None:
            raise CliError("--config-only: give the --local-cfg to put on the stick")
        try:
            out = build_config_stick(args.local_cfg, args.out_file)
        except MediaError as exc:
            raise OperationFailed(str(exc)) from None
        print(f"{out}: local.cfg on a {out.stat().st_size // 1024} KiB FAT image; "
              f"write it with: dd if={out} of=/dev/sdX bs=64k conv=fsync")
        return 0
    from .mkautoinstallcd import mkautoinstallcd
    status = mkautoinstallcd(args)
    print(f"write it to the stick with: dd if={args.out_file} of=/dev/sdX bs=4M conv=fsync")
    return status

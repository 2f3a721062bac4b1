"""si mkautoinstallusb: the USB counterparts of the manual's boot media: a whole autoinstall
stick (the hybrid image mkautoinstallcd makes, which boots BIOS and UEFI from a stick), or with
--config-only a small stick image with nothing but local.cfg, as mkautoinstalldiskette made."""
from __future__ import annotations

from ..bootmedia import MediaError, build_config_stick
from ._common import CliError, OperationFailed
from .mkautoinstallcd import add_media_args, mkautoinstallcd


def register(sub) -> None:
    p = sub.add_parser("mkautoinstallusb",
                       help="make an autoinstall USB stick image, or (--config-only) a local.cfg stick")
    add_media_args(p, "the image to write (dd it to the stick)")
    p.add_argument("--config-only", action="store_true",
                   help="only local.cfg, on a 1.44 MB FAT image: boot the machine from the network, a CD or "
                        "its disk as usual, with this stick in")
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
    status = mkautoinstallcd(args)
    print(f"write it to the stick with: dd if={args.out_file} of=/dev/sdX bs=4M conv=fsync")
    return status

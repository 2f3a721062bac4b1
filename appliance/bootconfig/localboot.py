"""localboot.efi: a tiny GRUB that starts the local disk's own UEFI boot loader.

Installed and unknown machines are told to boot their disk. On BIOS, iPXE's
`exit` does that: the BIOS moves on to the disk. UEFI firmware instead moves on
to its next boot option, which on most machines (OVMF included) is another
network boot: PXE over IPv6, HTTP boot over IPv4 and IPv6, each with its own
DHCP wait, before the disk gets its turn (measured in the lab: minutes under
TCG). So iPXE on UEFI chains this image, which finds the first hard disk that
has the removable-media loader path and starts it. Should none have one, it
exits with an error, and the firmware goes on as before.

Built with Debian's grub-mkimage from grub-efi-amd64-bin's modules; its
config is embedded and runs in GRUB's rescue parser, so it is plain commands.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

NAME = "localboot.efi"
MODULES_DIR = "usr/lib/grub/x86_64-efi"
PACKAGE = "grub-efi-amd64-bin"
LOADER = "/EFI/BOOT/BOOTX64.EFI"        # what the autoinstall installs (grub-install --removable)
# fat/ext2: where loaders live; search_fs_file: search --file; minicmd: exit.
MODULES = ("part_gpt", "part_msdos", "fat", "ext2", "search", "search_fs_file", "chain", "echo", "minicmd")
# GRUB lists hard disks before CD-ROMs, so an install CD left in the drive is
# not what this finds when the disk has a loader.
CONFIG = f"""\
echo "SystemImager: starting the boot loader on the local disk"
search --no-floppy --file --set=root {LOADER}
chainloader {LOADER}
boot
echo "SystemImager: no local disk has {LOADER}; back to the firmware"
exit 1
"""


class LocalbootUnavailable(RuntimeError):
    """GRUB's EFI modules or grub-mkimage are not installed; the message names the package."""


def build(dest: Path, source_root: Path = Path("/")) -> bool:
    """Write dest (atomically) unless it already holds the same image; True if written."""
    modules = source_root / MODULES_DIR
    mkimage = shutil.which("grub-mkimage")
    if mkimage is None or not (modules / "chain.mod").is_file():
        raise LocalbootUnavailable(f"{NAME} not built: install Debian package {PACKAGE} "
                                   f"(apt-get install {PACKAGE})")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".localboot-") as tmp:
        config, image = Path(tmp) / "config", Path(tmp) / NAME
        config.write_text(CONFIG)
        subprocess.run([mkimage, "-O", "x86_64-efi", "-d", str(modules), "-c", str(config), "-p", "/EFI/BOOT",
                        "-o", str(image), *MODULES], check=True, capture_output=True)
        if dest.is_file() and dest.read_bytes() == image.read_bytes():
            return False
        os.chmod(image, 0o644)
        os.replace(image, dest)
    return True

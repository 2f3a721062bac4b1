"""Which Debian package provides each program the code runs, and where a package put a file.

The one list of external programs: `./setup.sh` installs their packages (its
appliance profile those the appliance runs, its lab profile the rest), and
tests/test_debian_packages.py checks that every program the code invokes is
here and that setup.sh installs its package, so a forgotten package fails on
any machine, not only on a fresh one.

Files of a package (firmware, boot loaders) are found through `dpkg -L`, not
fixed paths: Debian releases move them (Debian 13 ships only OVMF's _4M files).
Imports nothing of the project, so services and the appliance can both use it.
"""
from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

# program -> the Debian package that ships it (on Debian 12 and 13 alike).
PROGRAMS: dict[str, str] = {
    # the appliance and its commands
    "rsync": "rsync",
    "ip": "iproute2", "ss": "iproute2", "tc": "iproute2",
    "curl": "curl",
    "depmod": "kmod",
    "zstd": "zstd",
    # the fleet transports (services/fleet): packing, the swarm, multicast
    "mktorrent": "mktorrent", "opentracker": "opentracker", "aria2c": "aria2", "ctorrent": "ctorrent",
    "udp-sender": "udpcast", "udp-receiver": "udpcast",
    "busybox": "busybox-static",
    "sfdisk": "fdisk",
    "lsblk": "util-linux", "blkid": "util-linux", "partx": "util-linux", "unshare": "util-linux",
    "losetup": "mount", "mount": "mount", "umount": "mount",
    "mkfs.ext4": "e2fsprogs", "mke2fs": "e2fsprogs", "dumpe2fs": "e2fsprogs",
    "mkfs.vfat": "dosfstools", "fsck.fat": "dosfstools",
    "getfacl": "acl", "setfacl": "acl",
    "grub-mkimage": "grub-common", "grub-mkrescue": "grub-common", "grub-editenv": "grub-common",
    "grub-probe": "grub-common", "grub-mkrelpath": "grub-common",
    "grub-install": "grub2-common",
    "xorriso": "xorriso", "mformat": "mtools", "mcopy": "mtools", "mtype": "mtools",
    "ssh": "openssh-client", "ssh-keygen": "openssh-client",
    "apt-get": "apt", "apt-cache": "apt",
    "dpkg": "dpkg", "dpkg-deb": "dpkg", "dpkg-query": "dpkg",
    "chroot": "coreutils", "cp": "coreutils", "cat": "coreutils", "env": "coreutils", "truncate": "coreutils",
    "sleep": "coreutils", "findmnt": "util-linux",
    "tar": "tar", "ldd": "libc-bin", "which": "debianutils", "sh": "dash", "bash": "bash",
    "cc": "gcc",
    # the lab: QEMU machines and the golden clients
    "qemu-system-x86_64": "qemu-system-x86", "qemu-img": "qemu-utils",
    "debootstrap": "debootstrap",
    "sysctl": "procps",
    # peers and clients the tests and benchmarks measure against
    "dhcpd": "isc-dhcp-server", "kea-dhcp4": "kea-dhcp4-server", "perfdhcp": "kea-admin",
    "dnsmasq": "dnsmasq-base", "dig": "bind9-dnsutils",
    "tftp": "tftp-hpa", "atftp": "atftp",
    "chromium": "chromium", "chromedriver": "chromium-driver", "sshd": "openssh-server",
}

# Firmware and loaders the lab reads from packages (package, file name).
OVMF = "ovmf"
IPXE_QEMU = "ipxe-qemu"


class MissingProgram(RuntimeError):
    """A program or a package's file is not on this machine; the message says what to install."""


def package_of(program: str) -> str:
    return PROGRAMS[Path(program).name]


def install_hint(package: str) -> str:
    return f"install the Debian package {package} (apt-get install {package}, or ./setup.sh)"


def _which(program: str) -> str | None:
    """On PATH, or in the sbin directories a non-root PATH leaves out."""
    return shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin:/usr/bin:/bin")


def program_path(program: str) -> str:
    """The path of an external program, or MissingProgram naming its package."""
    found = _which(program)
    if found is None:
        raise MissingProgram(f"{program} not found: {install_hint(package_of(program))}")
    return found


def require(*programs: str) -> None:
    """MissingProgram naming every absent program's package, in one line."""
    missing = [p for p in programs if _which(p) is None]
    if missing:
        packages = sorted({package_of(p) for p in missing})
        raise MissingProgram(f"{', '.join(missing)} not found: install the Debian package(s) "
                             f"{' '.join(packages)} (apt-get install {' '.join(packages)}, or ./setup.sh)")


@functools.lru_cache(maxsize=None)
def package_files(package: str) -> tuple[str, ...]:
    """Every path `dpkg -L` lists for an installed package; () when it is not installed."""
    proc = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True)
    return tuple(proc.stdout.splitlines()) if proc.returncode == 0 else ()


def package_file(package: str, *names: str) -> Path:
    """The first of `names` (file names, tried in order) that the package ships, as a regular file."""
    files = package_files(package)
    for name in names:
        for path in files:
            if path.rsplit("/", 1)[-1] == name and Path(path).is_file():
                return Path(path)
    state = "does not ship " + " or ".join(names) if files else "is not installed"
    raise MissingProgram(f"the Debian package {package} {state}: {install_hint(package)}")

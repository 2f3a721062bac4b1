"""The one table of network boot loaders.

For each loader choice and firmware: the file DHCP names, the config flavour
the loader then reads (pxelinux.cfg/, ipxe/ or grub/), and every file that
must be in the boot root for it, with the Debian package and path it comes
from. DHCP's answers, the exported dhcpd/Kea/dnsmasq configs, `si
mkbootserver`'s layout and the README all read this table, so a loader is
added here once.

Only x86-64 firmware is listed: Debian ships no arm64 network loader that an
amd64 appliance can install (grub-efi-arm64-signed is an arm64 package), so
arm64 machines are not offered a file that would not be there.
"""
from __future__ import annotations

from dataclasses import dataclass

# Firmware, as DHCP tells it from the client architecture (option 93, RFC 4578
# and IANA's registry) or the PXEClient vendor class.
BIOS = "bios"
UEFI = "uefi-x64"
UEFI_HTTP = "uefi-x64-http"     # UEFI HTTP boot: the boot file is a URL, no TFTP at all

_ARCH_FIRMWARE = {0: BIOS, 7: UEFI, 9: UEFI, 16: UEFI_HTTP}


def firmware_of(arch: int | None) -> str | None:
    """The firmware of a client architecture code; None for one we have no loader for (arm64, ...)."""
    return BIOS if arch is None else _ARCH_FIRMWARE.get(arch)


@dataclass(frozen=True)
class BootFile:
    dest: str            # path under the boot root
    source: str          # path under the source root (normally /)
    package: str         # the Debian package that ships it


_PXELINUX = BootFile("pxelinux.0", "usr/lib/PXELINUX/pxelinux.0", "pxelinux")
_SYSLINUX_BIOS = tuple(BootFile(f"{m}.c32", f"usr/lib/syslinux/modules/bios/{m}.c32", "syslinux-common")
                       for m in ("ldlinux", "menu", "libutil", "libcom32"))
_SYSLINUX_EFI = (BootFile("efi64/syslinux.efi", "usr/lib/SYSLINUX.EFI/efi64/syslinux.efi", "syslinux-efi"),
                 BootFile("efi64/ldlinux.e64", "usr/lib/syslinux/modules/efi64/ldlinux.e64", "syslinux-common"))
_UNDIONLY = BootFile("undionly.kpxe", "usr/lib/ipxe/undionly.kpxe", "ipxe")
_SNPONLY = BootFile("snponly.efi", "usr/lib/ipxe/snponly.efi", "ipxe")
_IPXE_EFI = BootFile("ipxe.efi", "usr/lib/ipxe/ipxe.efi", "ipxe")
# shim (signed by Microsoft's UEFI CA) loads grubx64.efi from its own TFTP
# directory; Debian's network GRUB is signed by Debian, whose key shim holds,
# and reads grub/grub.cfg-01-<mac> and the rest from the server (prefix /grub).
_SHIM = BootFile("shimx64.efi", "usr/lib/shim/shimx64.efi.signed", "shim-signed")
_GRUBNET = BootFile("grubx64.efi", "usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed", "grub-efi-amd64-signed")


@dataclass(frozen=True)
class Loader:
    choice: str                    # the dhcp.loader / dhcp.uefi_loader value that selects it
    firmware: str
    file: str                      # what DHCP names: a boot-root path, or under /boot/ over HTTP
    flavour: str                   # the per-host config it reads: pxelinux | ipxe | grub
    files: tuple[BootFile, ...]    # what the boot root must hold for it
    over_http: bool = False        # the file is fetched by URL (UEFI HTTP boot)
    secure_boot: bool = False      # runs with Secure Boot on (Microsoft's keys enrolled)


LOADERS: tuple[Loader, ...] = (
    Loader("ipxe", BIOS, "undionly.kpxe", "ipxe", (_UNDIONLY,)),
    Loader("ipxe", UEFI, "snponly.efi", "ipxe", (_SNPONLY,)),
    Loader("pxelinux", BIOS, "pxelinux.0", "pxelinux", (_PXELINUX, *_SYSLINUX_BIOS)),
    Loader("syslinux", UEFI, "efi64/syslinux.efi", "pxelinux", _SYSLINUX_EFI),
    Loader("shim", UEFI, "shimx64.efi", "grub", (_SHIM, _GRUBNET), secure_boot=True),
    Loader("ipxe", UEFI_HTTP, "ipxe.efi", "ipxe", (_IPXE_EFI,), over_http=True),
)

BIOS_CHOICES = tuple(sorted({x.choice for x in LOADERS if x.firmware == BIOS}))
UEFI_CHOICES = tuple(sorted({x.choice for x in LOADERS if x.firmware == UEFI}))


def loader(choice: str, firmware: str) -> Loader | None:
    """The table's row for a choice on a firmware; UEFI HTTP boot has one loader whatever the choice."""
    for row in LOADERS:
        if row.firmware == firmware and (row.choice == choice or firmware == UEFI_HTTP):
            return row
    return None


def by_file(file: str) -> Loader | None:
    """The row whose DHCP boot file this is (a URL's path counts), for logs."""
    for row in LOADERS:
        if file == row.file or file.endswith("/boot/" + row.file):
            return row
    return None


def all_files() -> tuple[BootFile, ...]:
    """Every file of every loader, once each, in table order (what mkbootserver lays out)."""
    seen: dict[str, BootFile] = {}
    for row in LOADERS:
        for f in row.files:
            seen.setdefault(f.dest, f)
    return tuple(seen.values())


def needed(bios_choice: str, uefi_choice: str) -> frozenset[str]:
    """The boot-root files the configured loaders cannot boot without (the rest are optional)."""
    rows = [loader(bios_choice, BIOS), loader(uefi_choice, UEFI), loader(uefi_choice, UEFI_HTTP)]
    return frozenset(f.dest for row in rows if row is not None for f in row.files)


_FIRMWARE_NAMES = {BIOS: "BIOS", UEFI: "UEFI x64", UEFI_HTTP: "UEFI x64 HTTP boot"}


def markdown_table() -> str:
    """The table as the README shows it (a test keeps the README equal to this)."""
    lines = ["| firmware | setting | DHCP boot file | then reads | with Secure Boot on | Debian packages |",
             "|---|---|---|---|---|---|"]
    for row in LOADERS:
        setting = f'`loader = "{row.choice}"`' if row.firmware == BIOS else \
            "any" if row.firmware == UEFI_HTTP else f'`uefi_loader = "{row.choice}"`'
        packages = " ".join(sorted({f.package for f in row.files}))
        where = "URL under `/boot/`" if row.over_http else "TFTP"
        secure = "n/a" if row.firmware == BIOS else "boots" if row.secure_boot else "refused (unsigned)"
        lines.append(f"| {_FIRMWARE_NAMES[row.firmware]} | {setting} | `{row.file}` ({where}) | "
                     f"{row.flavour} config | {secure} | {packages} |")
    return "\n".join(lines)

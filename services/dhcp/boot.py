"""Which boot file a PXE client gets, from what it says it is (the table: services/bootloaders.py).

iPXE is recognised by user class (77) "iPXE" or its encapsulated options (175)
so it gets an HTTP script instead of being chainloaded into iPXE again; other
firmware is told apart by client architecture (93) or, failing that, the arch
field of its PXEClient vendor class (60).
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import bootloaders

from . import packet as P
from .settings import Site

ARCH_BIOS = 0


@dataclass(frozen=True)
class BootChoice:
    file: str
    vendor_class: bytes | None = None     # option 60 to send back (UEFI HTTP boot)


def vendor_class(pkt: P.Packet) -> bytes:
    return pkt.get(P.OPT_VENDOR_CLASS) or b""


def is_pxe(pkt: P.Packet) -> bool:
    vc = vendor_class(pkt)
    return vc.startswith(b"PXEClient") or vc.startswith(b"HTTPClient") or pkt.has(P.OPT_CLIENT_ARCH)


def is_ipxe(pkt: P.Packet) -> bool:
    return b"iPXE" in (pkt.get(P.OPT_USER_CLASS) or b"") or pkt.has(P.OPT_IPXE_ENCAP)


def arch(pkt: P.Packet) -> int | None:
    arches = pkt.client_arches
    if arches:
        return arches[0]
    parts = vendor_class(pkt).split(b":")
    if len(parts) >= 3 and parts[1] == b"Arch" and parts[2].isdigit():
        return int(parts[2])
    return ARCH_BIOS if parts[0] == b"PXEClient" else None


def choose(pkt: P.Packet, cfg: Site) -> BootChoice | None:
    """The boot file for this client, or None if it is not network booting (or no loader fits it)."""
    if not is_pxe(pkt) and not is_ipxe(pkt):
        return None
    base = cfg.boot_url
    a = arch(pkt)
    firmware = bootloaders.firmware_of(a)
    if firmware is None:
        return None
    if vendor_class(pkt).startswith(b"HTTPClient"):
        firmware = bootloaders.UEFI_HTTP
    choice = cfg.dhcp.loader if firmware == bootloaders.BIOS else cfg.dhcp.uefi_loader
    row = bootloaders.loader(choice, firmware)
    if row is None:
        return None
    if row.over_http:
        return BootChoice(f"{base}/{row.file}", b"HTTPClient")
    # An iPXE already running (ours, HTTP boot's ipxe.efi, a NIC's iPXE ROM) gets
    # its script; only a site that wants pxelinux has iPXE load pxelinux instead.
    if is_ipxe(pkt) and row.flavour != "pxelinux":
        return BootChoice(f"{base}/ipxe/01-{pkt.mac.replace(':', '-')}.ipxe")
    return BootChoice(row.file)

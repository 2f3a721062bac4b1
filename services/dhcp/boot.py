"""Which boot file a PXE client gets, from what it says it is (contracts.md).

iPXE is recognised by user class (77) "iPXE" or its encapsulated options (175)
so it gets an HTTP script instead of being chainloaded into iPXE again; other
firmware is told apart by client architecture (93) or, failing that, the arch
field of its PXEClient vendor class (60).
"""
from __future__ import annotations

from dataclasses import dataclass

from appliance.config import Config

from . import packet as P

ARCH_BIOS = 0
ARCH_X64_UEFI = (7, 9)
ARCH_X64_HTTP = 16
ARCH_ARM64_UEFI = 11
ARCH_ARM64_HTTP = 19


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


def choose(pkt: P.Packet, cfg: Config) -> BootChoice | None:
    """The boot file for this client, or None if it is not network booting."""
    if not is_pxe(pkt) and not is_ipxe(pkt):
        return None
    base = f"http://{cfg.address}:{cfg.http.port}/boot"
    a = arch(pkt)
    if vendor_class(pkt).startswith(b"HTTPClient") or a in (ARCH_X64_HTTP, ARCH_ARM64_HTTP):
        path = "arm64/ipxe.efi" if a == ARCH_ARM64_HTTP else "ipxe.efi"
        return BootChoice(f"{base}/{path}", b"HTTPClient")
    if cfg.dhcp.loader == "pxelinux":
        if a in ARCH_X64_UEFI:
            return BootChoice("efi64/syslinux.efi")
        return BootChoice("pxelinux.0") if a in (ARCH_BIOS, None) else None
    if is_ipxe(pkt):
        return BootChoice(f"{base}/ipxe/01-{pkt.mac.replace(':', '-')}.ipxe")
    if a in ARCH_X64_UEFI:
        return BootChoice("snponly.efi")
    if a == ARCH_ARM64_UEFI:
        return BootChoice("arm64/snponly.efi")
    return BootChoice("undionly.kpxe") if a in (ARCH_BIOS, None) else None

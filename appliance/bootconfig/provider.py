"""Maps a requested boot path (TFTP or HTTP /boot/...) to rendered config bytes.

The loaders' own lookup orders decide which names we answer:
- pxelinux (pxelinux.0, and efi64/syslinux.efi relative to its directory):
  pxelinux.cfg/<uuid>, 01-<mac>, the client IP in hex shortened one digit at a
  time (C0A80164, C0A8016, ... C), then default. We answer 01-<mac> only for a
  known MAC; the hex names for a host found by client IP; `default` always
  (a local boot for machines we do not know).
- iPXE: ipxe/01-<mac>.ipxe (the URL our DHCP hands out) and ipxe/default.ipxe.
- GRUB (Debian's grubnetx64, prefix /grub): grub/grub.cfg-01-<mac>, then
  grub.cfg-<hex IP prefixes>, then grub/grub.cfg; same rules as pxelinux.
"""
from __future__ import annotations

import re
import time
from ipaddress import IPv4Address
from typing import Callable

from ..config import Config
from ..store import Store
from ..store.records import Host
from .decide import decide
from .render import render

_MAC = r"01-((?:[0-9a-f]{2}-){5}[0-9a-f]{2})"
_PATTERNS = [
    # (regex on the lower-cased path, flavour, what the capture is)
    (re.compile(rf"pxelinux\.cfg/{_MAC}"), "pxelinux", "mac"),
    (re.compile(r"pxelinux\.cfg/([0-9a-f]{1,8})"), "pxelinux", "hex"),
    (re.compile(r"pxelinux\.cfg/default"), "pxelinux", "default"),
    (re.compile(rf"ipxe/{_MAC}\.ipxe"), "ipxe", "mac-always"),
    (re.compile(r"ipxe/default\.ipxe"), "ipxe", "default"),
    (re.compile(rf"grub/grub\.cfg-{_MAC}"), "grub", "mac"),
    (re.compile(r"grub/grub\.cfg-([0-9a-f]{1,8})"), "grub", "hex"),
    (re.compile(r"grub/grub\.cfg"), "grub", "default"),
]


def hex_ip(ip: IPv4Address) -> str:
    """pxelinux's spelling of an address: 192.168.1.100 -> C0A80164."""
    return f"{int(ip):08X}"


def _client(client_ip: str) -> IPv4Address | None:
    try:
        return IPv4Address(client_ip.removeprefix("::ffff:"))
    except ValueError:
        return None


def host_by_client_ip(store: Store, ip: IPv4Address | None, now: float | None = None) -> Host | None:
    """The host a client IP belongs to: our lease says which MAC holds it, else host.ip."""
    if ip is None:
        return None
    now = time.time() if now is None else now
    for lease in store.leases():
        if lease.ip == str(ip) and lease.state == "bound" and lease.expires > now:
            return store.host_by_mac(lease.mac)   # an unknown MAC stays unknown
    return store.host_by_ip(str(ip))


def host_for_mac(store: Store, mac: str, ip: IPv4Address | None) -> Host | None:
    host = store.host_by_mac(mac)
    if host is None:
        # A host entered by IP only (no MAC recorded) may still be found by address.
        candidate = host_by_client_ip(store, ip)
        host = candidate if candidate is not None and candidate.mac is None else None
    return host


def boot_file(store: Store, cfg: Config, path: str, client_ip: str) -> bytes | None:
    """Rendered bytes for `path`, or None when the path is not a config we answer."""
    wanted = path.lstrip("/").lower()
    if wanted.startswith("efi64/"):
        wanted = wanted[len("efi64/"):]
    ip = _client(client_ip)
    for pattern, flavour, kind in _PATTERNS:
        m = pattern.fullmatch(wanted)
        if not m:
            continue
        if kind == "mac":
            host = store.host_by_mac(m.group(1).replace("-", ":"))
            if host is None:
                return None          # let the loader go on to its IP-based names
        elif kind == "mac-always":
            host = host_for_mac(store, m.group(1).replace("-", ":"), ip)
        elif kind == "hex":
            # Only the prefixes of this client's own address name it.
            if ip is None or not hex_ip(ip).startswith(m.group(1).upper()):
                return None
            host = host_by_client_ip(store, ip)
            if host is None:
                return None
        else:
            host = host_by_client_ip(store, ip)
        return render(flavour, decide(host, cfg), cfg)
    return None


def make_provider(ctx) -> Callable[[str, str], bytes | None]:
    """A Context.dynamic_files provider bound to the live config and store."""
    return lambda path, client_ip: boot_file(ctx.store, ctx.config, path, client_ip)

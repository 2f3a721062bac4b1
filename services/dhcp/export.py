"""Render an equivalent DHCP server config for people who keep their own server.

The same boot policy as policy.py/boot.py, written as ISC dhcpd.conf, Kea JSON
or dnsmasq config through jinja2 templates. iPXE expands settings in the DHCP
filename, so the per-MAC script URL uses ${netX/mac:hexhyp} instead of a
per-host rule.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from ipaddress import IPv4Address

import jinja2

from .. import bootloaders
from ..records import Host
from ..templating import environment
from .settings import Site

FORMATS = ("isc", "kea", "dnsmasq")
_TEMPLATES = {"isc": "dhcpd.conf.j2", "kea": "kea-dhcp4.json.j2", "dnsmasq": "dnsmasq.conf.j2"}


@dataclass(frozen=True)
class BootFiles:
    ipxe_script: str
    http_boot: str
    uefi: str
    bios: str


def boot_files(cfg: Site) -> BootFiles:
    """The files the table names for the configured loaders, spelled as the exports need them."""
    base = cfg.boot_url
    bios = bootloaders.loader(cfg.dhcp.loader, bootloaders.BIOS)
    uefi = bootloaders.loader(cfg.dhcp.uefi_loader, bootloaders.UEFI)
    http = bootloaders.loader(cfg.dhcp.uefi_loader, bootloaders.UEFI_HTTP)
    # iPXE clients get their script, except where the site has iPXE load pxelinux.
    script = bios.file if bios.flavour == "pxelinux" else f"{base}/ipxe/01-${{netX/mac:hexhyp}}.ipxe"
    return BootFiles(script, f"{base}/{http.file}", uefi.file, bios.file)


def _reservations(cfg: Site, hosts: list[Host]) -> list[dict]:
    """Hosts with a MAC, each placed in the subnet holding its fixed address (if any)."""
    out = []
    for h in hosts:
        if not h.mac:
            continue
        ip = None
        subnet_index = None
        if h.ip:
            try:
                ip = IPv4Address(h.ip)
            except ValueError:
                ip = None
            for i, s in enumerate(cfg.subnets):
                if ip is not None and ip in s.network:
                    subnet_index = i
        out.append({"hostname": h.hostname, "mac": h.mac, "ip": str(ip) if subnet_index is not None else None,
                    "subnet": subnet_index})
    return out


# Which formats can name a reservation's address by the host's name (looked up in the DHCP
# server's /etc/hosts or DNS), as the manual's mkdhcpstatic wrote them "so that you simply
# have to change the hosts file" to move a machine. Kea's reservations take addresses only.
BY_NAME = ("isc", "dnsmasq")


def render(cfg: Site, hosts: list[Host], fmt: str, by_name: bool = True) -> str:
    """The config text; by_name: reservations name their host (where fmt allows, BY_NAME)."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    env = environment(jinja2.PackageLoader("services.dhcp", "templates"))
    env.filters["json"] = json.dumps
    env.filters["hexip"] = lambda ip: IPv4Address(ip).packed.hex()
    text = env.get_template(_TEMPLATES[fmt]).render(
        cfg=cfg, boot=boot_files(cfg), hosts=_reservations(cfg, hosts), by_name=by_name and fmt in BY_NAME,
        hint=str(cfg.hint_address), site_option=cfg.dhcp.site_option, address=str(cfg.address))
    if fmt == "kea":
        json.loads(text)    # the template must yield valid JSON; fail here, not in Kea
    return text

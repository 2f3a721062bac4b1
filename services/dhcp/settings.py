"""DHCP's own settings: the [[subnet]] tables and the [dhcp] table, and what DHCP reads of the rest.

    [[subnet]]
    network = "10.77.0.0/24"
    pools = ["10.77.0.100-10.77.0.199"]
    gateway = "10.77.0.1"
    dns_servers = ["10.77.0.1"]
    lease_time = 3600

    [dhcp]
    mode = "server"         # "proxy": answer PXE only, another server assigns addresses
    loader = "ipxe"         # BIOS first stage; uefi_loader the UEFI one (services/bootloaders.py)
    in_order = false        # an unknown PXE machine becomes the next host waiting for a MAC

The appliance's Config is a Site: DHCP takes it through that protocol, never by import.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Protocol

from services import bootloaders
from services.tomlcheck import SettingsError, check_keys, ip, port, positive, take


@dataclass(frozen=True)
class Pool:
    first: IPv4Address
    last: IPv4Address

    def __contains__(self, ip: IPv4Address) -> bool:
        return self.first <= ip <= self.last

    @property
    def size(self) -> int:
        return int(self.last) - int(self.first) + 1

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


@dataclass(frozen=True)
class SubnetConfig:
    network: IPv4Network
    pools: tuple[Pool, ...] = ()
    gateway: IPv4Address | None = None
    dns_servers: tuple[IPv4Address, ...] = ()
    lease_time: int = 3600


@dataclass(frozen=True)
class DhcpConfig:
    mode: str = "server"          # "server" assigns addresses; "proxy" only answers PXE
    enrol: bool = False           # unknown MACs are recorded in the hosts table
    site_option: int = 224        # image-server hint also sent under this code
    probe_seconds: float = 4.0    # look for another DHCP server this long (dnsmasq pings ~3 s first)
    port: int = 67
    loader: str = "ipxe"          # BIOS first stage: "ipxe" (HTTP scripts) or "pxelinux"
    answer_router_solicitations: bool = True   # "no router here": PXE firmware stops waiting for IPv6
    ping_timeout: float = 0.5     # ping a new pool address this long before offering it; 0: never
    uefi_loader: str = "shim"     # UEFI first stage: "shim" (signed: Secure Boot on or off), "ipxe", "syslinux"
    in_order: bool = False        # an unknown PXE machine becomes the next host waiting for a MAC


class Site(Protocol):
    """What DHCP reads of the appliance's whole config."""
    address: IPv4Address
    domain: str
    subnets: tuple[SubnetConfig, ...]
    dhcp: DhcpConfig

    @property
    def hint_address(self) -> IPv4Address: ...     # option 100: where the image server is

    @property
    def boot_url(self) -> str: ...                 # http://address:port/boot

    def subnet_for(self, ip: IPv4Address) -> SubnetConfig | None: ...


def parse_pool(text: Any, key: str, network: IPv4Network) -> Pool:
    if not isinstance(text, str) or text.count("-") != 1:
        raise SettingsError(f"{key}: {text!r} is not a range like '10.0.0.100-10.0.0.199'")
    first, last = (ip(part.strip(), key) for part in text.split("-"))
    if first > last:
        raise SettingsError(f"{key}: range {text} runs backwards")
    for end in (first, last):
        if end not in network:
            raise SettingsError(f"{key}: {end} is outside subnet {network}")
        if end in (network.network_address, network.broadcast_address):
            raise SettingsError(f"{key}: {end} is the network or broadcast address of {network}")
    return Pool(first, last)


def parse_subnet(table: Any, index: int) -> SubnetConfig:
    prefix = f"subnet[{index}]."
    if not isinstance(table, dict):
        raise SettingsError(f"subnet[{index}]: expected a table")
    check_keys(table, {"network", "pools", "gateway", "dns_servers", "lease_time"}, prefix)
    if "network" not in table:
        raise SettingsError(f"{prefix}network: missing (e.g. network = \"10.77.0.0/24\")")
    try:
        network = IPv4Network(take(table, "network", prefix, str, None), strict=True)
    except ValueError as exc:
        raise SettingsError(f"{prefix}network: {exc}") from None
    pools = tuple(parse_pool(p, f"{prefix}pools[{i}]", network)
                  for i, p in enumerate(take(table, "pools", prefix, list, [])))
    ordered = sorted(pools, key=lambda p: p.first)
    for a, b in zip(ordered, ordered[1:]):
        if b.first <= a.last:
            raise SettingsError(f"{prefix}pools: ranges {a} and {b} overlap")
    gateway = table.get("gateway")
    gateway = ip(gateway, f"{prefix}gateway") if gateway is not None else None
    if gateway is not None and gateway not in network:
        raise SettingsError(f"{prefix}gateway: {gateway} is outside subnet {network}")
    dns = tuple(ip(v, f"{prefix}dns_servers[{i}]")
                for i, v in enumerate(take(table, "dns_servers", prefix, list, [])))
    lease = positive(table, "lease_time", prefix, 3600)
    if lease < 60:
        raise SettingsError(f"{prefix}lease_time: {lease} s is too short (at least 60)")
    return SubnetConfig(network, pools, gateway, dns, lease)


def parse_subnets(tables: list) -> tuple[SubnetConfig, ...]:
    subnets = tuple(parse_subnet(t, i) for i, t in enumerate(tables))
    for i, a in enumerate(subnets):
        for b in subnets[i + 1:]:
            if a.network.overlaps(b.network):
                raise SettingsError(f"subnet: {a.network} and {b.network} overlap")
    return subnets


def parse(table: dict) -> DhcpConfig:
    """The [dhcp] table, validated."""
    check_keys(table, {"mode", "enrol", "in_order", "site_option", "probe_seconds", "port", "loader",
                       "uefi_loader", "answer_router_solicitations", "ping_timeout"}, "dhcp.")
    mode = take(table, "mode", "dhcp.", str, "server")
    if mode not in ("server", "proxy"):
        raise SettingsError(f"dhcp.mode: {mode!r} is not 'server' or 'proxy'")
    site_option = take(table, "site_option", "dhcp.", int, 224)
    if not 224 <= site_option <= 254:
        raise SettingsError(f"dhcp.site_option: {site_option} is not a site-specific code (224-254)")
    dhcp = DhcpConfig(mode, take(table, "enrol", "dhcp.", bool, False), site_option,
                      float(take(table, "probe_seconds", "dhcp.", (int, float), 4.0)),
                      port(table, "port", "dhcp.", 67), take(table, "loader", "dhcp.", str, "ipxe"),
                      take(table, "answer_router_solicitations", "dhcp.", bool, True),
                      float(take(table, "ping_timeout", "dhcp.", (int, float), 0.5)))
    if dhcp.loader not in bootloaders.BIOS_CHOICES:
        raise SettingsError(f"dhcp.loader: {dhcp.loader!r} is not one of {', '.join(bootloaders.BIOS_CHOICES)}")
    # pxelinux's UEFI counterpart is syslinux.efi, as before uefi_loader existed.
    uefi_loader = take(table, "uefi_loader", "dhcp.", str, "syslinux" if dhcp.loader == "pxelinux" else "shim")
    if uefi_loader not in bootloaders.UEFI_CHOICES:
        raise SettingsError(f"dhcp.uefi_loader: {uefi_loader!r} is not one of {', '.join(bootloaders.UEFI_CHOICES)}")
    dhcp = replace(dhcp, uefi_loader=uefi_loader, in_order=take(table, "in_order", "dhcp.", bool, False))
    if dhcp.probe_seconds < 0:
        raise SettingsError(f"dhcp.probe_seconds: must not be negative, got {dhcp.probe_seconds}")
    if not 0 <= dhcp.ping_timeout <= 10:
        raise SettingsError(f"dhcp.ping_timeout: {dhcp.ping_timeout} must be from 0 (off) to 10 seconds")
    return dhcp

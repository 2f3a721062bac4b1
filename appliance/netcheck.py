"""Checks that keep the appliance off networks it must not serve.

DHCP on the wrong wire takes over somebody else's machines, so before serving
we insist the interface exists, holds an address in a configured subnet, and
carries no default route (the office LAN, not an install network), unless the
operator forces it.
"""
from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path

from .config import Config


class NetworkRefused(RuntimeError):
    """Serving on this interface would be unsafe; the message says what to do."""


def interface_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def default_route_interfaces() -> set[str]:
    """Interfaces holding an IPv4 or IPv6 default route in this namespace."""
    found = set()
    for family in ("-4", "-6"):
        try:
            out = subprocess.run(["ip", "-j", family, "route", "show", "default"],
                                 capture_output=True, text=True, timeout=5).stdout
            for route in json.loads(out or "[]"):
                if route.get("dev"):
                    found.add(route["dev"])
        except (OSError, ValueError, subprocess.SubprocessError):
            continue
    return found


def interface_addresses(name: str) -> list[ipaddress.IPv4Interface]:
    try:
        out = subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", name],
                             capture_output=True, text=True, timeout=5).stdout
        links = json.loads(out or "[]")
    except (OSError, ValueError, subprocess.SubprocessError):
        return []
    return [ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}")
            for link in links for a in link.get("addr_info", []) if a.get("family") == "inet"]


def check_interface(config: Config, *, force: bool = False) -> list[str]:
    """Raise NetworkRefused if serving DHCP on config.interface is unsafe.

    Returns warnings that --force overrode, so the caller can log them.
    """
    name = config.interface
    if not interface_exists(name):
        raise NetworkRefused(f"interface: {name} does not exist here (see 'ip link'); "
                             "set 'interface' to the install network's interface")
    problems = []
    if name in default_route_interfaces():
        problems.append(f"interface: {name} carries a default route, so it looks like a shared "
                        "network, not an isolated install network; serving DHCP there would answer "
                        "other people's machines. Use a dedicated interface, or pass --force if this "
                        "network really is yours")
    addresses = interface_addresses(name)
    if config.subnets and not any(a.ip in s.network for a in addresses for s in config.subnets):
        have = ", ".join(str(a) for a in addresses) or "no IPv4 address"
        problems.append(f"interface: {name} has {have}, none in the configured subnets "
                        f"({', '.join(str(s.network) for s in config.subnets)}); add "
                        f"{config.address} to it or fix [[subnet]], or pass --force")
    if problems and not force:
        raise NetworkRefused(problems[0])
    return problems

"""The fleet's own settings: the [fleet] table of the appliance's config.

    [fleet]
    transport = "bittorrent"          # rsync | bittorrent | multicast, for every image and host
    images = { web = "multicast" }    # an image's own transport
    groups = { rack1 = "rsync" }      # a host group's (comes before the image's)
    seed_seconds = 30                 # an installed machine seeds this long before its reboot
    join_timeout = 60                 # no swarm progress or session start in this long: rsync instead
    tracker_port = 6969               # opentracker, TCP and UDP
    peer_port = 6881                  # the appliance's seeders use peer_port, peer_port + 1, ...
    multicast_portbase = 9000         # udp-sender sessions use portbase + 2k and + 2k + 1
    min_receivers = 1                 # a session starts once this many have joined ...
    min_wait = 5                      # ... and this many seconds passed since the first,
    max_wait = 30                     # or this long after the first joined
    max_bitrate = ""                  # udp-sender --max-bitrate ("600m"); "" unlimited
    fec = ""                          # udp-sender --fec ("8x8/128"); "" none
    retries_until_drop = 30           # a receiver that stops answering is dropped, not waited for
"""
from __future__ import annotations

import re
from dataclasses import dataclass

TRANSPORTS = ("rsync", "bittorrent", "multicast")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
BITRATE = re.compile(r"^\d{1,6}[kmg]?$")
FEC = re.compile(r"^\d{1,3}x\d{1,3}/\d{1,4}$")


class SettingsError(ValueError):
    """A [fleet] value is wrong; the message names the key (without the 'fleet.' prefix)."""


@dataclass(frozen=True)
class FleetSettings:
    transport: str = "rsync"
    images: tuple[tuple[str, str], ...] = ()
    groups: tuple[tuple[str, str], ...] = ()
    seed_seconds: int = 30
    join_timeout: int = 60
    tracker_port: int = 6969
    peer_port: int = 6881
    multicast_portbase: int = 9000
    min_receivers: int = 1
    min_wait: int = 5
    max_wait: int = 30
    max_bitrate: str = ""
    fec: str = ""
    retries_until_drop: int = 30

    def transport_for(self, image: str, group: str | None = None, asked: str | None = None) -> str:
        """Policy: what the machine asked for, else its group's, else its image's, else the default."""
        if asked in TRANSPORTS:
            return asked
        if group and group in dict(self.groups):
            return dict(self.groups)[group]
        return dict(self.images).get(image, self.transport)

    def uses(self, transport: str) -> bool:
        return transport in {self.transport, *dict(self.images).values(), *dict(self.groups).values()}


INTS = {"seed_seconds": (0, 86400), "join_timeout": (1, 3600), "tracker_port": (1, 65535),
        "peer_port": (1, 65535), "multicast_portbase": (1024, 65000), "min_receivers": (1, 1000),
        "min_wait": (0, 3600), "max_wait": (1, 86400), "retries_until_drop": (1, 1000)}


def _transport(value, key: str) -> str:
    if value not in TRANSPORTS:
        raise SettingsError(f"{key}: {value!r} is not one of {', '.join(TRANSPORTS)}")
    return value


def _table(data: dict, key: str) -> tuple[tuple[str, str], ...]:
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise SettingsError(f"{key}: expected a table of name = transport")
    for name, value in table.items():
        if not NAME.match(name):
            raise SettingsError(f"{key}.{name}: {name!r} is not a name (letters, digits, . _ -)")
        _transport(value, f"{key}.{name}")
    return tuple(sorted(table.items()))


def parse(data: dict) -> FleetSettings:
    allowed = {"transport", "images", "groups", "max_bitrate", "fec", *INTS}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SettingsError(f"{unknown[0]}: unknown key (known: {', '.join(sorted(allowed))})")
    values = {}
    for key, (low, high) in INTS.items():
        if key in data:
            v = data[key]
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
                raise SettingsError(f"{key}: {v!r} must be a whole number from {low} to {high}")
            values[key] = v
    for key, pattern, example in (("max_bitrate", BITRATE, "600m"), ("fec", FEC, "8x8/128")):
        if key in data:
            if not isinstance(data[key], str) or not (data[key] == "" or pattern.match(data[key])):
                raise SettingsError(f"{key}: {data[key]!r} is not like {example!r}")
            values[key] = data[key]
    s = FleetSettings(transport=_transport(data.get("transport", "rsync"), "transport"),
                      images=_table(data, "images"), groups=_table(data, "groups"), **values)
    if s.min_wait > s.max_wait:
        raise SettingsError(f"min_wait: {s.min_wait} is more than max_wait {s.max_wait}")
    if s.tracker_port == s.peer_port:
        raise SettingsError(f"peer_port: {s.peer_port} is the tracker's port")
    return s

"""The name rules every part shares: host labels, reserved host names, image names, DNS domains.

One place, so DHCP (names clients send), DNS (names it publishes), the hosts
table, the image store and the boot configs agree. Imports nothing of the
project.
"""
from __future__ import annotations

import re

HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")         # one RFC 1123 label, lower case
# Names that hijack other clients when accepted or published: proxy discovery
# (WPAD, ISATAP), loopback, the resolver's own search domain.
RESERVED_HOSTNAMES = frozenset({"wpad", "localhost", "isatap", "localdomain"})
# Image names become directories, rsync modules and script names: no '/', no '..'.
IMAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")


def is_host_label(name: str) -> bool:
    return bool(HOST_LABEL.fullmatch(name))


def valid_image_name(name: object) -> bool:
    return isinstance(name, str) and bool(IMAGE_NAME.fullmatch(name)) and ".." not in name


def valid_domain(name: str) -> bool:
    labels = name.lower().rstrip(".").split(".")
    return len(name) <= 253 and all(is_host_label(label) for label in labels)

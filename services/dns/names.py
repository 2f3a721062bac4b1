"""Which hostnames may appear in the install domain's zone.

Names come from the hosts table (admin-typed) and from DHCP clients (option
12: anything at all). Only a single RFC 1123 label survives; everything else is
skipped rather than repaired, so a client can never steer what gets published.
"""
from __future__ import annotations

from services.names import RESERVED_HOSTNAMES, is_host_label


def sanitise_hostname(raw: str | bytes | None, domain: str) -> str | None:
    """The short name to publish for `raw`, or None if it must not be published."""
    if raw is None:
        return None
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("ascii")
        except UnicodeDecodeError:
            return None
    name = raw.strip().lower().rstrip(".")
    suffix = "." + domain.lower().rstrip(".")
    if name.endswith(suffix):
        name = name[: -len(suffix)]
    # A client's FQDN in another domain: its first label is its short name.
    name = name.split(".", 1)[0]
    if not is_host_label(name) or name in RESERVED_HOSTNAMES:
        return None
    return name

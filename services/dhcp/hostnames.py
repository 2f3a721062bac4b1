"""Client-supplied host names (option 12) made safe to store and publish.

A name a client sends is only a suggestion: it must be one DNS label of
letters, digits and hyphens; anything else (newline, quote, NUL, invalid
UTF-8, over 63 bytes) is dropped, and names that hijack other clients
(services.names.RESERVED_HOSTNAMES) are never accepted.
"""
from __future__ import annotations

from services.names import RESERVED_HOSTNAMES, is_host_label


def sanitise(raw: bytes | None) -> str | None:
    """The first label of raw, lower-cased, if it is a safe host name; else None."""
    if not raw:
        return None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    text = text.rstrip(".").lower()
    label = text.split(".", 1)[0]
    if not is_host_label(label) or label in RESERVED_HOSTNAMES:
        return None
    if "." in text and not all(is_host_label(part) for part in text.split(".")):
        return None
    return label

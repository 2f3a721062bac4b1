"""Client-supplied host names (option 12) made safe to store and publish.

A name a client sends is only a suggestion: it must be one DNS label of
letters, digits and hyphens; anything else (newline, quote, NUL, invalid
UTF-8, over 63 bytes) is dropped, and names that hijack other clients
(wpad, localhost, isatap) are never accepted.
"""
from __future__ import annotations

import re

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
FORBIDDEN = frozenset({"wpad", "localhost", "isatap", "localdomain"})


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
    if not _LABEL.fullmatch(label) or label in FORBIDDEN:
        return None
    if "." in text and not all(_LABEL.fullmatch(part) for part in text.split(".")):
        return None
    return label

"""Server-sent events, the codec: one frame of `event:`, `id:` and `data:` lines.

The data is JSON, which has no raw newlines, so each frame has one data line.
"""
from __future__ import annotations

import json

KEEPALIVE = b": keepalive\n\n"   # a comment line: keeps proxies and idle timers from closing the stream


def frame(event: str, data, event_id: str | int | None = None) -> bytes:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, default=str))
    return ("\n".join(lines) + "\n\n").encode()


def parse(stream: bytes) -> list[tuple[str, str | None, object]]:
    """Frames back into (event, id, data), as a browser's EventSource reads them (for tests)."""
    out = []
    for block in stream.decode().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value[1:] if value.startswith(" ") else value
        if "data" in fields:
            out.append((fields.get("event", "message"), fields.get("id"), json.loads(fields["data"])))
    return out

"""Stand-ins for the initrd's si-progress, si-log, si-fail and si-done, for running the
rendered master script (or its functions) outside the initrd: each records its call in
$CALLS (si-log's text in $CALLS.log) and posts it to the appliance as the real one would.
"""
from __future__ import annotations

import os
from pathlib import Path

STUB = """#!/bin/sh
# Records the call, then posts it like the initrd's command would.
echo "{name} $*" >>"$CALLS"
url="http://$IMAGESERVER:$SI_HTTP_PORT/api/installs/$HOSTNAME"
post() {{ curl -s -m 5 -H "Content-Type: application/json" -d "$1" "$url" >>"$CALLS.http"; echo >>"$CALLS.http"; }}
{body}
"""
STUBS = {
    "si-progress": r'post "{\"phase\": \"$1\", \"percent\": ${2:-0}${3:+, \"bytes\": $3}}"',
    "si-log": r"""printf '%s\n' "$*" >>"$CALLS.log"
text=$(printf '%s' "$*" | head -n 1 | tr -cd '[:alnum:] ._:/=()-')
post "{\"log\": \"$text\"}" """,
    "si-fail": r'post "{\"state\": \"failed\", \"log\": \"failed\"}"; exit 1',
    "si-done": r'post "{\"state\": \"succeeded\", \"phase\": \"done\", \"percent\": 100}"',
}


def write_stubs(directory: Path) -> Path:
    """si-progress, si-log, si-fail, si-done that record each call in $CALLS and post it."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, body in STUBS.items():
        (directory / name).write_text(STUB.format(name=name, body=body))
        os.chmod(directory / name, 0o755)
    return directory

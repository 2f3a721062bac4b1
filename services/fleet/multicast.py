"""udpcast sessions: the udp-sender command line and what its messages mean.

A session sends one image stream to the receivers that joined it. It starts
once min_receivers joined and min_wait passed since the first, or max_wait
after the first; receivers that come later wait for the next session (each
session has its own port pair, so two can run at once).
"""
from __future__ import annotations

import re
from pathlib import Path

from .settings import FleetSettings

SESSIONS = 16   # port pairs portbase, portbase + 2, ...

JOINED = re.compile(r"New connection from (\S+)")
STARTED = re.compile(r"Starting transfer")
DONE = re.compile(r"Transfer complete")


def sender_argv(stream: Path, interface: str, portbase: int, s: FleetSettings) -> list[str]:
    argv = ["udp-sender", "--file", str(stream), "--interface", interface, "--portbase", str(portbase),
            "--nokbd", "--min-receivers", str(s.min_receivers), "--min-wait", str(s.min_wait),
            "--max-wait", str(s.max_wait), "--retries-until-drop", str(s.retries_until_drop)]
    if s.max_bitrate:
        argv += ["--max-bitrate", s.max_bitrate]
    if s.fec:
        argv += ["--fec", s.fec]
    return argv


def event_of(line: str) -> tuple[str, str] | None:
    """("joined", address) | ("started", "") | ("done", "") for a line udp-sender prints, else None."""
    if m := JOINED.search(line):
        return "joined", m.group(1)
    if STARTED.search(line):
        return "started", ""
    if DONE.search(line):
        return "done", ""
    return None

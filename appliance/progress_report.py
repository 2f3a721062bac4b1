"""What an installing client may report (POST /api/installs/<host>): parsed and bounded, or refused.

A pure function of the request body, so every field's type and range is
checked in one place before anything reaches the store: an out-of-range
number (SQLite holds 64-bit integers) or a body nested past the parser's
depth is a 400, never a 500, and no run is touched.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

INSTALL_STATES = ("running", "succeeded", "failed")
KINDS = ("install", "update")
MAX_BODY = 256 * 1024          # one report; the table keeps a run's last 256 KiB of log anyway
MAX_PHASE = 200                # characters: a phase is a short label ("rsync", "grub")
MAX_BYTES = 2**63 - 1          # SQLite's INTEGER


class BadReport(ValueError):
    """The body is not a valid progress report; the message says which field and why."""


@dataclass(frozen=True)
class ProgressReport:
    phase: str | None = None
    percent: float | None = None
    bytes_done: int | None = None
    state: str | None = None
    log: str = ""
    kind: str = "install"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse(raw: bytes) -> ProgressReport:
    if len(raw) > MAX_BODY:
        raise BadReport(f"report larger than {MAX_BODY} bytes")
    try:
        body = json.loads(raw)
    except RecursionError:
        raise BadReport("JSON nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadReport(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadReport("expected a JSON object")
    phase, percent, done = body.get("phase"), body.get("percent"), body.get("bytes")
    state, log, kind = body.get("state"), body.get("log", ""), body.get("kind", "install")
    if phase is not None and not (isinstance(phase, str) and len(phase) <= MAX_PHASE):
        raise BadReport(f"phase must be a string of at most {MAX_PHASE} characters")
    if percent is not None and not ((_is_int(percent) or isinstance(percent, float))
                                    and math.isfinite(percent) and 0 <= percent <= 100):
        raise BadReport("percent must be a number from 0 to 100")
    if done is not None and not (_is_int(done) and 0 <= done <= MAX_BYTES):
        raise BadReport(f"bytes must be an integer from 0 to {MAX_BYTES}")
    if state is not None and state not in INSTALL_STATES:
        raise BadReport(f"state must be one of {', '.join(INSTALL_STATES)}")
    if not isinstance(log, str):
        raise BadReport("log must be a string")
    if kind not in KINDS:
        kind = "install"        # older clients send nothing or their own words: count it as an install
    return ProgressReport(phase, None if percent is None else float(percent), done, state, log, kind)


def starts_run(before, report: ProgressReport) -> bool:
    """Whether this report begins a new run: none is running for the host, or it says 'start'."""
    return before is None or before.state != "running" or report.phase == "start"


def milestone(before, report: ProgressReport, image: str | None, now: float) -> tuple[str, str] | None:
    """The event a report makes, if any: a run starting, a new phase, its end (kind, detail).

    before: the host's run as it stood before this report. Percent-only reports make
    none: they are the monitor's."""
    started = starts_run(before, report)
    if report.state in ("succeeded", "failed"):
        seconds = now - before.started if before is not None and not started else 0.0
        moved = report.bytes_done if report.bytes_done is not None else (before.bytes if before else 0)
        return report.state, f"{report.kind} of {image or '-'} {report.state} after {seconds:.0f} s, " \
                              f"{moved / 2**20:.1f} MiB"
    if started:
        return "start", f"{report.kind} of {image or '-'} started"
    if report.phase and report.phase != before.phase:
        return "phase", f"{report.kind}: {report.phase}"
    return None

"""What `si monitor` and the console's installs table show: one row per install or update run.

Both are fed by install_row(), so the terminal and the web page never
disagree. Speed is the run's average (bytes / elapsed).
"""
from __future__ import annotations

import time

from rich.table import Table

from .store.records import Install


def last_line(log: str) -> str:
    lines = [line for line in log.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def install_row(run: Install, now: float | None = None) -> dict:
    now = now or time.time()
    elapsed = max((run.finished or now) - run.started, 0.0)
    return {
        "id": run.id, "hostname": run.hostname, "image": run.image, "kind": run.kind,
        "state": run.state, "phase": run.phase or "", "percent": round(run.percent, 1),
        "bytes": run.bytes, "elapsed": round(elapsed, 1),
        "speed_bps": round(run.bytes / elapsed) if elapsed > 0 else 0,
        "last_line": last_line(run.log), "log": run.log,
    }


def install_rows(installs: list[Install], now: float | None = None) -> list[dict]:
    return [install_row(run, now) for run in installs]


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def render_table(rows: list[dict]) -> Table:
    """The terminal view; running runs first, then the rest newest first."""
    table = Table(title="SystemImager installs and updates", expand=True)
    for column in ("host", "image", "kind", "phase", "progress", "speed", "elapsed", "state"):
        table.add_column(column, no_wrap=column != "state")
    order = sorted(rows, key=lambda r: (r["state"] != "running", -r["id"]))
    for r in order:
        filled = int(r["percent"] / 5)
        bar = "█" * filled + "░" * (20 - filled)
        state = {"running": "[yellow]running", "succeeded": "[green]succeeded",
                 "failed": "[red]failed"}.get(r["state"], r["state"])
        if r["state"] == "failed" and r["last_line"]:
            state += f"\n[dim]{r['last_line']}"
        table.add_row(r["hostname"], r["image"] or "-", r["kind"], r["phase"],
                      f"{bar} {r['percent']:5.1f}%", f"{human_bytes(r['speed_bps'])}/s",
                      f"{r['elapsed']:.0f}s", state)
    return table

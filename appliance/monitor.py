"""What `si monitor` and the /monitor page show: one row per install or update run.

Both views are fed by install_rows(), so the terminal and the web page never
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


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>SystemImager monitor</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35em .6em; border-bottom: 1px solid #ddd; vertical-align: top; }
.bar { width: 12em; height: .9em; background: #eee; border-radius: .3em; overflow: hidden; display: inline-block; }
.bar span { display: block; height: 100%; background: #3a7; }
.failed .bar span { background: #c33; }
.running td.state { color: #a60; } .succeeded td.state { color: #282; } .failed td.state { color: #c22; }
pre { max-height: 15em; overflow: auto; background: #f6f6f6; padding: .5em; margin: .3em 0 0; }
#updated { color: #888; font-size: .9em; }
td:nth-child(5), td:nth-child(6), td:nth-child(7) { white-space: nowrap; }
</style></head>
<body>
<h1>SystemImager installs and updates</h1>
<p id="updated">loading&hellip;</p>
<table><thead><tr><th>host</th><th>image</th><th>kind</th><th>phase</th><th>progress</th>
<th>speed</th><th>elapsed</th><th>state</th></tr></thead><tbody id="runs"></tbody></table>
<script>
function human(n) { const u = ["B","KiB","MiB","GiB"]; let i = 0;
  while (n >= 1024 && i < 3) { n /= 1024; i++; } return (i ? n.toFixed(1) : n.toFixed(0)) + " " + u[i]; }
function cell(row, text, cls) { const td = document.createElement("td"); td.textContent = text;
  if (cls) td.className = cls; row.appendChild(td); return td; }
async function refresh() {
  try {
    const runs = await (await fetch("/api/installs")).json();
    runs.sort((a, b) => (a.state !== "running") - (b.state !== "running") || b.id - a.id);
    const body = document.getElementById("runs"); body.textContent = "";
    for (const r of runs) {
      const tr = document.createElement("tr"); tr.className = r.state; tr.dataset.host = r.hostname;
      cell(tr, r.hostname); cell(tr, r.image || "-"); cell(tr, r.kind); cell(tr, r.phase);
      const p = cell(tr, ""); const bar = document.createElement("span"); bar.className = "bar";
      const fill = document.createElement("span"); fill.style.width = r.percent + "%";
      bar.appendChild(fill); p.appendChild(bar); p.append(" " + r.percent.toFixed(1) + "%");
      cell(tr, human(r.speed_bps) + "/s"); cell(tr, Math.round(r.elapsed) + "s");
      const st = cell(tr, r.state, "state");
      if (r.state !== "running" && r.log) { const d = document.createElement("details");
        const s = document.createElement("summary"); s.textContent = r.last_line || "log";
        const pre = document.createElement("pre"); pre.textContent = r.log;
        d.appendChild(s); d.appendChild(pre); st.appendChild(d); }
      body.appendChild(tr);
    }
    document.getElementById("updated").textContent =
      runs.length + " run(s); updated " + new Date().toLocaleTimeString();
  } catch (e) { document.getElementById("updated").textContent = "appliance not answering: " + e; }
}
refresh(); setInterval(refresh, 2000);
</script></body></html>
"""

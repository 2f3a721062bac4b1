"""si monitor: a live terminal view of installs and updates on a running appliance."""
from __future__ import annotations

import json
import sys
import time
import urllib.request

from rich.console import Console
from rich.live import Live

from ..monitor import render_table
from ._common import NoAppliance, add_config_arg, load_config
from ._output import add_json_arg, emit


def register(sub) -> None:
    p = sub.add_parser("monitor", help="watch installs and updates live (also in the web console, http://SERVER:PORT/)")
    add_config_arg(p)
    p.add_argument("--once", action="store_true", help="print the table once and exit (also when piped)")
    add_json_arg(p)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    p.set_defaults(func=monitor)


def _rows(port: int) -> list[dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/installs", timeout=5) as resp:
            return json.load(resp)
    except OSError as exc:
        raise NoAppliance(f"no appliance answers on port {port} ({exc}); is 'si up' running?") from None


def monitor(args) -> int:
    port = load_config(args).http.port
    if args.once or args.json or not sys.stdout.isatty():
        rows = _rows(port)
        if sys.stdout.isatty() and not args.json:
            Console().print(render_table(rows))
        else:       # whole values, one run a line (or the records), for a pipe
            emit(("host", "image", "kind", "phase", "percent", "bytes/s", "elapsed", "state", "last line"),
                 [(r["hostname"], r["image"], r["kind"], r["phase"], f"{r['percent']:.1f}", f"{r['speed_bps']:.0f}",
                   f"{r['elapsed']:.0f}", r["state"], r["last_line"]) for r in rows],
                 records=rows, as_json=args.json)
        return 0
    with Live(render_table(_rows(port)), refresh_per_second=4) as live:
        try:
            while True:
                time.sleep(args.interval)
                live.update(render_table(_rows(port)))
        except KeyboardInterrupt:
            pass
    return 0

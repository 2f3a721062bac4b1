"""si monitor: a live terminal view of installs and updates on a running appliance."""
from __future__ import annotations

import json
import time
import urllib.request

from rich.console import Console
from rich.live import Live

from ..monitor import render_table
from ._common import CliError, add_config_arg, load_config


def register(sub) -> None:
    p = sub.add_parser("monitor", help="watch installs and updates live (also at http://SERVER:PORT/monitor)")
    add_config_arg(p)
    p.add_argument("--once", action="store_true", help="print the table once and exit")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    p.set_defaults(func=monitor)


def _rows(port: int) -> list[dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/installs", timeout=5) as resp:
            return json.load(resp)
    except OSError as exc:
        raise CliError(f"no appliance answers on port {port} ({exc}); is 'si up' running?") from None


def monitor(args) -> int:
    port = load_config(args).http.port
    if args.once:
        Console().print(render_table(_rows(port)))
        return 0
    with Live(render_table(_rows(port)), refresh_per_second=4) as live:
        try:
            while True:
                time.sleep(args.interval)
                live.update(render_table(_rows(port)))
        except KeyboardInterrupt:
            pass
    return 0

"""si status: ask a running appliance what serves where."""
from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

from rich.console import Console
from rich.table import Table

from ..supervisor import status_rows
from ._common import NoAppliance, add_config_arg, load_config
from ._output import emit


def register(sub) -> None:
    p = sub.add_parser("status", help="show what a running appliance serves and how it is doing")
    add_config_arg(p)
    p.add_argument("--json", action="store_true", help="print the raw status")
    p.set_defaults(func=status)


def fetch_status(port: int, timeout: float = 5.0) -> dict:
    url = f"http://127.0.0.1:{port}/api/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:  # 503 still carries the table
        return json.load(exc)
    except (urllib.error.URLError, OSError) as exc:
        raise NoAppliance(f"no appliance answers on {url} ({getattr(exc, 'reason', exc)}); is 'si up' running?")


def print_status(status: dict) -> None:
    tty = sys.stdout.isatty()
    if tty:
        table = Table(title=f"SystemImager appliance on {status.get('interface')} ({status.get('address')})")
        for column in ("service", "state", "listening", "serves"):
            table.add_column(column)
        for row in status_rows(status):
            table.add_row(*row)
        Console().print(table)
    else:
        emit(("service", "state", "listening", "serves"), status_rows(status))
    for blocker in status.get("installs_blocked_by", []):    # a pipe gets the rows alone on stdout
        print(f"installs cannot start: {blocker}", file=sys.stdout if tty else sys.stderr)


def status(args) -> int:
    cfg = load_config(args)
    data = fetch_status(cfg.http.port)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print_status(data)
    return 0 if data.get("ok") else 1

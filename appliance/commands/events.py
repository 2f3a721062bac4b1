"""si events: what happened on the appliance (leases, PXE boots, installs, images), newest last."""
from __future__ import annotations

import json
import sys
import time

from ._common import add_config_arg, load_config, open_store
from ._output import plain


def register(sub) -> None:
    p = sub.add_parser("events", help="the appliance's events: leases, PXE boots, installs, images")
    add_config_arg(p)
    p.add_argument("--host", help="only this host's")
    p.add_argument("--limit", type=int, default=50, help="how many of the newest to show (default 50)")
    p.add_argument("--follow", "-f", action="store_true", help="then keep printing new ones as they happen")
    p.add_argument("--json", action="store_true", help="one JSON record a line")
    p.set_defaults(func=events)


def line(e: dict, as_json: bool, tty: bool) -> str:
    if as_json:
        return json.dumps(e)
    fields = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["ts"])), e["source"], e["kind"],
              plain(e["host"]), plain(e["detail"]))
    return "  ".join(fields) if tty else "\t".join(fields)


def events(args) -> int:
    store = open_store(load_config(args))
    tty = sys.stdout.isatty()
    last = 0
    for e in store.events(max(1, args.limit), host=args.host):
        print(line(e, args.json, tty))
        last = e["id"]
    if not args.follow:
        return 0
    try:
        while True:
            sys.stdout.flush()
            time.sleep(0.5)
            for e in store.events(1000, host=args.host, after=last):
                print(line(e, args.json, tty))
                last = e["id"]
    except KeyboardInterrupt:
        return 0

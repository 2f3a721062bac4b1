"""si logs HOST: the log of a host's newest install or update, as the machine reported it."""
from __future__ import annotations

import sys
import time

from ._common import OperationFailed, add_config_arg, load_config, open_store

POLL = 0.5   # seconds between looks at the store while following


def register(sub) -> None:
    p = sub.add_parser("logs", help="a host's newest install or update log (--follow: as it grows)")
    add_config_arg(p)
    p.add_argument("hostname")
    p.add_argument("--follow", "-f", action="store_true",
                   help="keep printing what the machine reports, and the next run's log when one starts")
    p.set_defaults(func=logs)


def _header(run) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started))
    return f"=== {run.kind} of {run.image or '-'} on {run.hostname}, started {when}: {run.state}"


def logs(args) -> int:
    store = open_store(load_config(args))
    if store.host(args.hostname) is None and store.current_install(args.hostname) is None:
        raise OperationFailed(f"hostname: no host {args.hostname!r} (see 'si hosts list')")
    run = store.current_install(args.hostname)
    if run is None and not args.follow:
        raise OperationFailed(f"{args.hostname}: no install or update yet")
    shown_id, offset, state = None, 0, None
    try:
        while True:
            if run is not None:
                if run.id != shown_id:
                    if shown_id is not None or args.follow:
                        print(_header(run), file=sys.stderr)
                    shown_id, offset, state = run.id, 0, run.state
                if len(run.log) < offset:      # the store cut the front of a long log
                    offset = 0
                sys.stdout.write(run.log[offset:])
                sys.stdout.flush()
                offset = len(run.log)
                if args.follow and run.state != state:
                    print(f"=== {run.kind} {run.state}", file=sys.stderr)
                    state = run.state
            if not args.follow:
                return 0 if run.state != "failed" else 1
            time.sleep(POLL)
            run = store.current_install(args.hostname)
    except KeyboardInterrupt:
        return 0

"""si lab: the install network demo, built in network namespaces on this machine."""
from __future__ import annotations

import os
from pathlib import Path

from ._common import OperationFailed


def register(sub) -> None:
    p = sub.add_parser("lab", help="run the lab demo: an install network in namespaces on this machine")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    demo = actions.add_parser("demo", help="bring the appliance up in a lab network and show it working")
    demo.add_argument("--workdir", type=Path, help="where state and logs go (default: a new temp dir)")
    demo.add_argument("--keep-running", action="store_true", help="leave the lab up until Ctrl-C")
    demo.add_argument("--transport", choices=("rsync", "bittorrent", "multicast"), default="rsync",
                      help="how the machines pull the image: one rsync each (default), one BitTorrent "
                           "swarm, or one udpcast multicast session")
    demo.set_defaults(func=demo_cmd)
    clean = actions.add_parser("clean", help="remove namespaces left by killed lab runs")
    clean.set_defaults(func=clean_cmd)


def _need_root() -> None:
    if os.geteuid() != 0:
        raise OperationFailed("the lab builds network namespaces: run it as root")


def demo_cmd(args) -> int:
    _need_root()
    from ..lab.demo import run_demo
    return run_demo(args.workdir, args.keep_running, args.transport)


def clean_cmd(args) -> int:
    _need_root()
    from ..lab.netns import sweep_stale
    removed = sweep_stale()
    print(f"removed {len(removed)} stale namespace(s){': ' + ', '.join(removed) if removed else ''}")
    return 0

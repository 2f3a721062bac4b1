"""si pushupdate: update many installed clients to an image over ssh."""
from __future__ import annotations

import asyncio
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .. import pushupdate as pu
from ._common import CliError, OperationFailed, add_config_arg, load_config, open_store


def register(sub) -> None:
    p = sub.add_parser("pushupdate", help="run updateclient on many clients over ssh")
    add_config_arg(p)
    p.add_argument("--image", required=True, help="image to update to, NAME or NAME:VERSION")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--hosts", metavar="PATTERN", help="hostnames matching this glob, e.g. 'www*'")
    who.add_argument("--group", help="hosts of this group")
    p.add_argument("--server", help="image server the clients pull from (default: the appliance's)")
    p.add_argument("--dry-run", action="store_true", help="show what each client would change")
    p.add_argument("--concurrency", type=int, default=10, help="clients updated at once (default 10)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per client (default 1800)")
    p.add_argument("--ssh-user", default="root")
    p.add_argument("--ssh-port", type=int, default=22)
    p.add_argument("--ssh-key", type=Path)
    # dest "remote_command": "command" is the top-level parser's (the error prefix "si pushupdate: ...")
    p.add_argument("--command", dest="remote_command", default="updateclient",
                   help="updateclient on the clients (default: updateclient)")
    p.set_defaults(func=pushupdate)


def pushupdate(args) -> int:
    cfg = load_config(args)
    if args.concurrency < 1 or args.timeout <= 0:
        raise CliError("--concurrency and --timeout must be positive")
    targets = pu.select_targets(open_store(cfg), args.hosts, args.group)
    if not targets:
        raise OperationFailed(f"no hosts match {'--hosts ' + args.hosts if args.hosts else '--group ' + args.group} "
                       "(see 'si hosts list')")
    remote = pu.updateclient_command(args.server or str(cfg.hint_address), args.image,
                                     dry_run=args.dry_run, command=args.remote_command)
    ssh = pu.SshOptions(args.ssh_user, args.ssh_port, args.ssh_key, cfg.state_dir / "known_hosts")
    console = Console()
    console.print(f"pushing {args.image} to {len(targets)} host(s), {args.concurrency} at a time: {remote}")
    colour = {"ok": "green", "failed": "red", "unreachable": "magenta", "timeout": "yellow"}
    results = asyncio.run(pu.push(
        targets, remote, ssh, concurrency=args.concurrency, timeout=args.timeout,
        on_result=lambda r: console.print(f"  {r.hostname}: [{colour[r.status]}]{r.status}[/] ({r.seconds:.1f}s)")))
    table = Table(title="pushupdate")
    for column in ("host", "result", "exit", "seconds", "last output"):
        table.add_column(column)
    for r in sorted(results, key=lambda r: r.hostname):
        last = r.output.splitlines()[-1] if r.output else ""
        table.add_row(r.hostname, f"[{colour[r.status]}]{r.status}", "-" if r.exit_code is None else str(r.exit_code),
                      f"{r.seconds:.1f}", last[:80])
    console.print(table)
    if args.dry_run:
        for r in results:
            if r.ok and r.output:
                console.rule(f"{r.hostname} would change")
                console.print(r.output, markup=False, highlight=False)
    bad = [r for r in results if not r.ok]
    console.print(f"{len(results) - len(bad)} ok, {len(bad)} not ok")
    return 1 if bad else 0

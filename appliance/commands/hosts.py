"""si hosts: list hosts, and flip a host between reinstall and local boot."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ._common import CliError, add_config_arg, load_config, open_store


def register(sub) -> None:
    p = sub.add_parser("hosts", help="list hosts; mark one for reinstall or local boot")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    ls = actions.add_parser("list", help="the hosts table")
    add_config_arg(ls)
    ls.set_defaults(func=list_hosts)
    for name, netboot, text in (("reinstall", "install", "next PXE boot autoinstalls HOST"),
                                ("local", "local", "next PXE boot goes to HOST's own disk")):
        q = actions.add_parser(name, help=text)
        add_config_arg(q)
        q.add_argument("hostname")
        q.set_defaults(func=lambda args, netboot=netboot: set_netboot(args, netboot))


def list_hosts(args) -> int:
    store = open_store(load_config(args))
    table = Table()
    for column in ("hostname", "mac", "ip", "image", "group", "next boot", "console"):
        table.add_column(column)
    for h in store.hosts():
        table.add_row(h.hostname, h.mac or "-", h.ip or "-", h.image or "-", h.grp or "-",
                      "autoinstall" if h.netboot == "install" else "local disk", h.console or "-")
    Console().print(table)
    return 0


def set_netboot(args, netboot: str) -> int:
    store = open_store(load_config(args))
    if not store.set_netboot(args.hostname, netboot):
        raise CliError(f"hostname: no host {args.hostname!r} (see 'si hosts list')")
    print(f"{args.hostname}: next PXE boot {'autoinstalls' if netboot == 'install' else 'boots the local disk'}")
    return 0

"""si mkdhcpserver: export an equivalent ISC dhcpd / Kea / dnsmasq config.

For sites that keep their own DHCP server: same subnets, pools, reservations
(hosts with a MAC), image-server hint and PXE/iPXE boot policy as the
appliance's built-in server.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from services.dhcp import export

from ._common import CliError, OperationFailed, add_config_arg, load_config, open_store


def register(sub) -> None:
    p = sub.add_parser("mkdhcpserver", help="write a dhcpd.conf, Kea or dnsmasq config for your own DHCP server")
    add_config_arg(p)
    p.add_argument("--format", choices=export.FORMATS, default="isc",
                   help="isc (dhcpd.conf), kea (kea-dhcp4 JSON) or dnsmasq (default: isc)")
    p.add_argument("--output", type=Path, help="write here instead of standard output")
    p.add_argument("--by-address", action="store_true",
                   help="reservations give addresses, not host names (by default isc and dnsmasq name "
                        "the host, as the manual's mkdhcpstatic did, so editing /etc/hosts moves it)")
    p.set_defaults(func=mkdhcpserver)


def mkdhcpserver(args) -> int:
    cfg = load_config(args)
    if not cfg.subnets:
        raise CliError("subnet: no [[subnet]] in the config, nothing to export")
    text = export.render(cfg, open_store(cfg).hosts(), args.format, by_name=not args.by_address)
    if args.output is None:
        print(text, end="")
        _note_reservations(args)
        return 0
    tmp = args.output.with_name(f".{args.output.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, args.output)      # never leave a half-written config behind
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OperationFailed(f"--output: cannot write {args.output}: {exc.strerror}") from None
    print(f"wrote {args.format} config to {args.output}")
    _note_reservations(args)
    return 0


def _note_reservations(args) -> None:
    if args.by_address:
        return
    if args.format not in export.BY_NAME:
        print(f"si mkdhcpserver: note: {args.format} reservations take addresses, not host names: "
              "change an address in the hosts table (si hosts set) and export again", file=sys.stderr)
    else:
        print("si mkdhcpserver: note: reservations name their hosts; the DHCP server finds their "
              "addresses in its /etc/hosts (addclients wrote them) or DNS", file=sys.stderr)

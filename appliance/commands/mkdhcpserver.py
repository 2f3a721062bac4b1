"""si mkdhcpserver: export an equivalent ISC dhcpd / Kea / dnsmasq config.

For sites that keep their own DHCP server: same subnets, pools, reservations
(hosts with a MAC), image-server hint and PXE/iPXE boot policy as the
appliance's built-in server.
"""
from __future__ import annotations

import os
from pathlib import Path

from services.dhcp import export

from ._common import CliError, OperationFailed, add_config_arg, load_config, open_store


def register(sub) -> None:
    p = sub.add_parser("mkdhcpserver", help="write a dhcpd.conf, Kea or dnsmasq config for your own DHCP server")
    add_config_arg(p)
    p.add_argument("--format", choices=export.FORMATS, default="isc",
                   help="isc (dhcpd.conf), kea (kea-dhcp4 JSON) or dnsmasq (default: isc)")
    p.add_argument("--output", type=Path, help="write here instead of standard output")
    p.set_defaults(func=mkdhcpserver)


def mkdhcpserver(args) -> int:
    cfg = load_config(args)
    if not cfg.subnets:
        raise CliError("subnet: no [[subnet]] in the config, nothing to export")
    text = export.render(cfg, open_store(cfg).hosts(), args.format)
    if args.output is None:
        print(text, end="")
        return 0
    tmp = args.output.with_name(f".{args.output.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, args.output)      # never leave a half-written config behind
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OperationFailed(f"--output: cannot write {args.output}: {exc.strerror}") from None
    print(f"wrote {args.format} config to {args.output}")
    return 0

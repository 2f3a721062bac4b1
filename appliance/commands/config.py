"""si config check|example: validate and explain the appliance config."""
from __future__ import annotations

from .. import config as config_mod
from .. import netcheck
from ._common import CliError, add_config_arg, config_path, load_config


def register(sub) -> None:
    p = sub.add_parser("config", help="check or print the appliance config")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    check = actions.add_parser("check", help="validate a config file and summarise it")
    add_config_arg(check)
    check.add_argument("--file-only", action="store_true",
                       help="check the file alone, not whether this machine can serve it (a config for another box)")
    check.set_defaults(func=check_cmd)
    example = actions.add_parser("example", help="print an annotated example config")
    example.set_defaults(func=lambda args: print(config_mod.EXAMPLE, end="") or 0)


def check_cmd(args) -> int:
    cfg = load_config(args)
    warnings = []
    if not args.file_only:      # what `si up` will check on this machine, said now
        try:
            warnings = netcheck.check_interface(cfg, force=True)
        except netcheck.NetworkRefused as exc:
            raise CliError(str(exc)) from None
    print(f"{config_path(args)}: OK")
    print(f"  serves on     {cfg.interface} as {cfg.address} (domain {cfg.domain})")
    print(f"  image server  {cfg.hint_address} (DHCP option 100 and {cfg.dhcp.site_option})")
    print(f"  services      {', '.join(sorted(cfg.services)) or 'none'}")
    for s in cfg.subnets:
        pools = ", ".join(str(p) for p in s.pools) or "reservations only"
        print(f"  subnet        {s.network} pools {pools} gateway {s.gateway or '-'} lease {s.lease_time}s")
    print(f"  DHCP mode     {cfg.dhcp.mode}{', enrolling unknown MACs' if cfg.dhcp.enrol else ''}")
    print(f"  state         {cfg.state_dir} (images, scripts, appliance.db); logs {cfg.log_dir}")
    print(f"  boot root     {cfg.boot_root}")
    for warning in warnings:
        print(f"  warning       si up refuses this without --force: {warning}")
    return 0

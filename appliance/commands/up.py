"""si up: run every enabled service in one process until signalled."""
from __future__ import annotations

import asyncio
import logging

from .. import bootconfig, netcheck
from ..images import ImageStore
from ..service import Context
from ..supervisor import Supervisor, build_services
from ._common import CliError, add_config_arg, load_config, open_store
from .status import print_status

log = logging.getLogger("si.up")


def register(sub) -> None:
    p = sub.add_parser("up", help="run the install server (DHCP, TFTP, DNS, HTTP, rsyncd)")
    add_config_arg(p)
    p.add_argument("--force", action="store_true",
                   help="serve even on an interface with a default route or no address in the subnets")
    p.set_defaults(func=up)


def checked_config(args):
    """The config, once the network check passed: nothing is written before this."""
    cfg = load_config(args)
    try:
        for warning in netcheck.check_interface(cfg, force=args.force):
            log.warning("forced: %s", warning)
    except netcheck.NetworkRefused as exc:
        raise CliError(str(exc)) from None
    return cfg


def make_context(cfg) -> Context:
    for path in (cfg.state_dir, cfg.log_dir, cfg.boot_root, cfg.images_dir, cfg.scripts_dir, cfg.run_dir):
        path.mkdir(parents=True, exist_ok=True)
    return bootconfig.install(Context(cfg, open_store(cfg)))


def up(args) -> int:
    ctx = make_context(checked_config(args))
    ctx.force = args.force  # --force also overrides the DHCP rogue-server refusal
    bootconfig.prepare_boot_root(ctx.config)
    for image in ImageStore(ctx.config, ctx.store).reconcile():
        log.warning("image %s: its link lagged the store (a getimage was killed mid-commit); fixed", image)

    def reload() -> Context:
        new = make_context(checked_config(args))
        new.force = args.force
        bootconfig.prepare_boot_root(new.config)
        return new

    supervisor = Supervisor(ctx, build_services(ctx), reload_config=reload)
    ctx.status = supervisor.status

    def started(status: dict) -> None:
        print_status(status)
        log.info("serving; SIGHUP reloads %s, SIGTERM stops", ctx.config.source)
        if "http" in ctx.config.services:
            log.info("web console: http://%s:%d/ ('si console url' opens it with the operator token)",
                     ctx.config.address, ctx.config.http.port)

    asyncio.run(supervisor.run_until_signalled(started))
    log.info("stopped")
    return 0

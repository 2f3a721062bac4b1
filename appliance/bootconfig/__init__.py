"""Per-host boot configs (pxelinux, iPXE, GRUB) rendered on request, and the boot root layout."""
from __future__ import annotations

import logging

from services import bootloaders

from .decide import BootEntry, decide
from .layout import BOOT_FILES, BootLayoutError, LayoutReport, lay_out
from .provider import boot_file, make_provider
from .render import render

log = logging.getLogger("si.bootconfig")


def install(ctx):
    """Serve rendered per-host configs through ctx.dynamic_file (TFTP and HTTP /boot); returns ctx."""
    ctx.dynamic_files.append(make_provider(ctx))
    return ctx


def needed_files(cfg) -> frozenset[str]:
    """The boot-root files the configured loaders (dhcp.loader, dhcp.uefi_loader) need."""
    return bootloaders.needed(cfg.dhcp.loader, cfg.dhcp.uefi_loader)


def prepare_boot_root(cfg) -> LayoutReport:
    """`si up` at start: lay out what is there, warn about what is not (never fatal)."""
    try:
        report = lay_out(cfg.boot_root, strict=False, needed=needed_files(cfg))
    except OSError as exc:
        log.error("boot root %s: cannot lay out the boot loaders: %s", cfg.boot_root, exc)
        return LayoutReport()
    for note in report.notes(optional=False):
        log.warning("boot root %s: %s", cfg.boot_root, note)
    return report


__all__ = ["BOOT_FILES", "BootEntry", "BootLayoutError", "LayoutReport", "boot_file", "decide",
           "install", "lay_out", "make_provider", "needed_files", "prepare_boot_root", "render"]

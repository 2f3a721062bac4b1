"""Boot configs from jinja2 templates: pxelinux (BIOS and syslinux.efi), iPXE, GRUB."""
from __future__ import annotations

from pathlib import Path

import jinja2

from services.templating import environment

from ..config import Config
from .decide import BootEntry

_ENV = environment(jinja2.FileSystemLoader(Path(__file__).parent))   # *.j2 beside this module

FLAVOURS = {"pxelinux": "pxelinux.cfg.j2", "ipxe": "ipxe.j2", "grub": "grub.cfg.j2"}


def render(flavour: str, entry: BootEntry, cfg: Config) -> bytes:
    """One boot config; every value in it was validated by decide()."""
    boot_url = cfg.boot_url
    text = _ENV.get_template(FLAVOURS[flavour]).render(entry=entry, boot_url=boot_url)
    return text.encode("ascii")

"""Who boots what: the per-host decision behind every rendered boot config.

Install gate: only a known host with an image and netboot == 'install' gets the
autoinstall entry; unknown machines and installed hosts boot their own disk.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from services.names import is_host_label, valid_image_name

from ..config import CONSOLE, Config
from ..store.records import Host

KERNEL = "systemimager/kernel"
INITRD = "systemimager/initrd.img"

log = logging.getLogger("si.bootconfig")

# What may reach a kernel command line or a loader script unquoted.


@dataclass(frozen=True)
class SerialConsole:
    kernel_arg: str          # the console= value, e.g. "ttyS0,115200n8"
    unit: int | None         # COM port index for the loader's own output (ttyS<n> only)
    speed: int


@dataclass(frozen=True)
class BootEntry:
    action: str                      # "install" or "local"
    reason: str                      # one line for the rendered file's comment
    hostname: str | None = None
    image: str | None = None
    kernel: str = KERNEL
    initrd: str = INITRD
    cmdline: str = ""
    serial: SerialConsole | None = None

    @property
    def installs(self) -> bool:
        return self.action == "install"


def parse_console(value: str | None) -> SerialConsole | None:
    """host.console -> SerialConsole, None when unset or not a console= value."""
    if not value:
        return None
    m = CONSOLE.match(value.strip())
    if not m:
        log.warning("ignoring console %r: not a Linux console= value like ttyS0,115200n8", value)
        return None
    dev = m.group("dev")
    unit = int(m.group("unit")) if dev.startswith("ttyS") else None
    return SerialConsole(value.strip(), unit, int(m.group("speed") or 9600))


def decide(host: Host | None, cfg: Config) -> BootEntry:
    if host is None:
        return BootEntry("local", "unknown machine: boot the local disk")
    if not is_host_label((host.hostname or "").lower()):
        # Names reach comments, echo lines and the kernel command line: never unchecked.
        log.warning("host %r: name not usable on a kernel command line; booting it locally", host.hostname)
        return BootEntry("local", "host name not usable on a kernel command line: boot the local disk")
    if host.netboot != "install":
        return BootEntry("local", f"{host.hostname} is installed: boot the local disk", host.hostname)
    if not host.image or not valid_image_name(host.image):
        return BootEntry("local", f"{host.hostname} has no (valid) image assigned: boot the local disk",
                         host.hostname)
    serial = parse_console(host.console or cfg.console_for(host.grp))
    args = [f"IMAGESERVER={cfg.hint_address}", f"SI_HTTP_PORT={cfg.http.port}", f"HOSTNAME={host.hostname}"]
    if serial:
        args += ["console=tty0", f"console={serial.kernel_arg}"]
    return BootEntry("install", f"{host.hostname}: autoinstall image {host.image}", host.hostname,
                     host.image, cmdline=" ".join(args), serial=serial)

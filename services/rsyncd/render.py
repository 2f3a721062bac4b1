"""rsyncd.conf for the managed daemon: pure rendering plus an atomic write.

Modules: `<image>` (the latest complete version), `<image>@<N>` (each complete
version), `scripts` and `boot`. Every module is read-only and reachable only
from the install subnets, known hosts' addresses and 127.0.0.1.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from .settings import Site
from services.names import valid_image_name

from ..atomicfile import write_atomic
from ..templating import environment

TEMPLATE = Path(__file__).with_name("rsyncd.conf.j2")
# A value that would break out of its line or section in rsyncd.conf.
_UNSAFE_VALUE = re.compile(r"[\n\r\x00\[\]]")


@dataclass(frozen=True)
class Module:
    name: str
    path: str
    comment: str


def conf_path(cfg: Site) -> Path:
    return cfg.run_dir / "rsyncd.conf"


def modules(cfg: Site, versions: list[dict]) -> list[Module]:
    """Modules for the complete versions given (rows of the image_versions table)."""
    out = [Module("scripts", str(cfg.scripts_dir), "autoinstall scripts and hosts file"),
           Module("boot", str(cfg.boot_root), "boot files (kernel, initrd, loaders)")]
    latest: dict[str, dict] = {}
    for v in sorted(versions, key=lambda v: (v["image"], v["version"])):
        name, path = v["image"], str(v["path"])
        if not valid_image_name(name) or _UNSAFE_VALUE.search(path) \
                or v.get("state", "complete") != "complete":
            continue  # never let a bad row into the config
        out.append(Module(f"{name}@{v['version']}", path, f"image {name} version {v['version']}"))
        latest[name] = v
    for name, v in sorted(latest.items()):
        out.append(Module(name, str(v["path"]), f"image {name} (version {v['version']})"))
    return out


def hosts_allow(cfg: Site, host_ips: list[str] = ()) -> list[str]:
    """The install subnets, 127.0.0.1, and known hosts with addresses outside them."""
    allow = [str(s.network) for s in cfg.subnets]
    for ip in host_ips:
        try:
            addr = ipaddress.IPv4Address(ip)
        except ValueError:
            continue
        if not any(addr in s.network for s in cfg.subnets) and str(addr) not in allow:
            allow.append(str(addr))
    if "127.0.0.1" not in allow:
        allow.append("127.0.0.1")
    return allow


def pid_path(cfg: Site) -> Path:
    """The daemon writes its pid here, so a restarted appliance can find one a killed appliance left."""
    return cfg.run_dir / "rsyncd.pid"


def render(cfg: Site, versions: list[dict], host_ips: list[str] = ()) -> str:
    env = environment(jinja2.FileSystemLoader(str(TEMPLATE.parent)))
    return env.get_template(TEMPLATE.name).render(
        port=cfg.rsyncd.port, address=cfg.address, log_file=cfg.log_dir / "rsyncd.log",
        max_connections=cfg.rsyncd.max_connections, lock_file=cfg.run_dir / "rsyncd.lock", pid_file=pid_path(cfg),
        hosts_allow=hosts_allow(cfg, list(host_ips)), modules=modules(cfg, versions))


def render_from_store(cfg: Site, store) -> str:
    return render(cfg, store.complete_image_versions(), [h.ip for h in store.hosts() if h.ip])


def write_if_changed(path: Path, text: str) -> bool:
    """Replace path with text atomically; False when it was already so."""
    try:
        if path.read_text() == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    write_atomic(path, text)
    return True


def write_config(cfg: Site, store) -> Path:
    """Render from the store and install the result where the daemon reads it."""
    path = conf_path(cfg)
    write_if_changed(path, render_from_store(cfg, store))
    return path

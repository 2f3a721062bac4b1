"""Render `<image>.master` from an install plan (jinja2) and write it atomically."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import jinja2

from services.atomicfile import write_atomic

from ..config import Config, valid_image_name
from .plan import InstallPlan, build_plan

IP_METHODS = ("static_dhcp", "dynamic_dhcp", "static", "replicant")
POST_INSTALL = ("reboot", "shutdown", "beep")
def shell_quote(value: object) -> str:
    """One shell word, single-quoted (the only quoting busybox sh and every sh agree on)."""
    return "'" + str(value).replace("'", "'\\''") + "'"


_env = jinja2.Environment(
    loader=jinja2.PackageLoader("appliance.autoinstall", "templates"),
    trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined, autoescape=False)
_env.filters["sq"] = shell_quote


def render_master(plan: InstallPlan) -> str:
    return _env.get_template("master.sh.j2").render(
        image=plan.image, plan=plan,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def image_root(cfg: Config, store, image: str) -> Path:
    """The directory of the image's latest complete version (else images_dir/<image>)."""
    versions = [v for v in store.image_versions(image) if v.get("state") == "complete"]
    if versions:
        path = Path(max(versions, key=lambda v: v["version"])["path"])
        return path if path.is_absolute() else cfg.images_dir / path
    return cfg.images_dir / image


def plan_for(cfg: Config, store, image: str) -> InstallPlan:
    info = store.image(image) or {}
    ip_method = info.get("ip_method") if info.get("ip_method") in IP_METHODS else None
    post = info.get("post_install") if info.get("post_install") in POST_INSTALL else None
    return build_plan(image, image_root(cfg, store, image), ip_method=ip_method,
                      post_install=post, rsync_port=cfg.rsyncd.port)


def write_master_script(cfg: Config, store, image_name: str) -> Path:
    """Write scripts_dir/<image>.master; host links (and edited copies) are untouched."""
    if not valid_image_name(image_name):
        raise ValueError(f"image name {image_name!r} is not valid")
    plan = plan_for(cfg, store, image_name)
    path = cfg.scripts_dir / f"{image_name}.master"
    write_atomic(path, render_master(plan), mode=0o755)
    return path

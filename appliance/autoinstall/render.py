"""Render `<image>.master` from an install plan (jinja2) and write it atomically."""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from functools import cache
from pathlib import Path

from services.atomicfile import write_atomic

from services.fleet import pack
from services.names import valid_image_name

from ..config import Config
from .plan import InstallPlan, build_plan

IP_METHODS = ("static_dhcp", "dynamic_dhcp", "static", "replicant")
POST_INSTALL = ("reboot", "shutdown", "beep")


def shell_quote(value: object) -> str:
    """One shell word, single-quoted (the only quoting busybox sh and every sh agree on)."""
    return "'" + str(value).replace("'", "'\\''") + "'"


HERE = Path(__file__).parent
# What the script is made from besides the image: a change to any rewrites it.
CODE = (HERE / "templates/master.sh.j2", HERE / "render.py", HERE / "plan.py", HERE / "scheme.py", HERE / "fstab.py",
        Path(pack.__file__))


@cache
def _environment():
    import jinja2  # a tenth of a second: only paid when a script is really written

    from services.templating import environment
    env = environment(jinja2.PackageLoader("appliance.autoinstall", "templates"))
    env.filters["sq"] = shell_quote
    return env


def render_master(plan: InstallPlan, inputs: str = "") -> str:
    return _environment().get_template("master.sh.j2").render(
        image=plan.image, plan=plan, inputs=inputs, tar_extract_options=" ".join(
            w if w.replace("-", "").replace("=", "").isalnum() else shell_quote(w) for w in pack.EXTRACT[1:]),
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


def inputs_fingerprint(cfg: Config, store, image: str) -> str:
    """A hash of everything the script is rendered from: code, settings, image tree."""
    info = store.image(image) or {}
    root = image_root(cfg, store, image)
    try:
        st = root.stat()   # a pull that changed the tree made a new directory (see images.py)
        tree = (str(root), st.st_ino, st.st_ctime_ns)
    except OSError:
        tree = (str(root),)
    h = hashlib.sha256(repr((image, info.get("ip_method"), info.get("post_install"),
                             cfg.rsyncd.port, tree)).encode())
    for source in CODE:
        h.update(source.read_bytes())
    return h.hexdigest()[:32]


def write_master_script(cfg: Config, store, image_name: str) -> Path:
    """Write scripts_dir/<image>.master unless it is already made from the same inputs.

    Host links (and edited copies) are untouched.
    """
    if not valid_image_name(image_name):
        raise ValueError(f"image name {image_name!r} is not valid")
    path = cfg.scripts_dir / f"{image_name}.master"
    inputs = inputs_fingerprint(cfg, store, image_name)
    try:
        with path.open() as f:
            if f"# inputs: {inputs}\n" in [f.readline() for _ in range(4)]:
                return path
    except OSError:
        pass
    write_atomic(path, render_master(plan_for(cfg, store, image_name), inputs), mode=0o755)
    return path

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
LIBRARY = HERE / "templates/install-functions.sh"     # static shell, copied into every script as it is
CODE = (HERE / "templates/master.sh.j2", LIBRARY, HERE / "render.py", HERE / "plan.py", HERE / "scheme.py", HERE / "fstab.py",
        Path(pack.__file__))


@cache
def _environment():
    import jinja2  # a tenth of a second: only paid when a script is really written

    from services.templating import environment
    env = environment(jinja2.PackageLoader("appliance.autoinstall", "templates"))
    env.filters["sq"] = shell_quote
    return env


@cache
def _library() -> str:
    return LIBRARY.read_text()


def render_master(plan: InstallPlan, inputs: str = "") -> str:
    return _environment().get_template("master.sh.j2").render(
        image=plan.image, plan=plan, inputs=inputs, library=_library(), tar_extract_options=" ".join(
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


RENDERED = "# rendered: "     # the digest of the script as written, to tell a hand edit


def _stamped(text: str) -> str:
    """text with a "# rendered: <sha256>" line after its inputs line (the digest of text)."""
    head, sep, rest = text.partition("\n# inputs: ")
    line, nl, body = rest.partition("\n")
    digest = hashlib.sha256(text.encode()).hexdigest()[:20]
    return f"{head}{sep}{line}{nl}{RENDERED}{digest}\n{body}"


def edited_by_hand(text: str) -> bool:
    """True when a script we wrote was changed since (its digest no longer matches)."""
    lines = text.split("\n")
    stamp = next((i for i, l in enumerate(lines[:6]) if l.startswith(RENDERED)), None)
    if stamp is None:
        return False        # written before scripts carried a digest: nothing to compare
    digest = lines[stamp][len(RENDERED):]
    original = "\n".join(lines[:stamp] + lines[stamp + 1:])
    return hashlib.sha256(original.encode()).hexdigest()[:20] != digest


def master_edited(cfg: Config, image_name: str) -> bool:
    """Whether the image's master script exists and was edited by hand since it was written."""
    try:
        return edited_by_hand((cfg.scripts_dir / f"{image_name}.master").read_text())
    except OSError:
        return False


def write_master_script(cfg: Config, store, image_name: str, *, keep_edited: bool = False,
                        note=lambda _text: None) -> Path:
    """Write scripts_dir/<image>.master unless it is already made from the same inputs.

    The manual warns that getimage may replace a customised master script: one edited by
    hand is kept as <image>.master.edited-<time> before the new one is written, or, with
    keep_edited, left alone (out of date). note() says which. Host links (and edited
    per-host copies) are untouched.
    """
    if not valid_image_name(image_name):
        raise ValueError(f"image name {image_name!r} is not valid")
    path = cfg.scripts_dir / f"{image_name}.master"
    inputs = inputs_fingerprint(cfg, store, image_name)
    try:
        current = path.read_text()
    except OSError:
        current = None
    if current is not None and f"# inputs: {inputs}" in current.split("\n", 5)[:5]:
        return path
    if current is not None and edited_by_hand(current):
        if keep_edited:
            note(f"{path} was edited by hand and is left as it is, although the image or its settings "
                 "changed: check it against the image")
            return path
        when = datetime.now().strftime("%Y%m%d-%H%M%S")
        backup = path.with_name(f"{path.name}.edited-{when}")
        write_atomic(backup, current, mode=0o644)
        note(f"{path} was edited by hand: that version is kept as {backup}; the new script replaces it "
             "(getimage --keep-master leaves an edited one alone)")
    write_atomic(path, _stamped(render_master(plan_for(cfg, store, image_name), inputs)), mode=0o755)
    return path

"""si images: list, show, versions, delete, chroot, and move images whole (rename, copy, export, import)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .. import getimage as engine
from ..images import ImageError, ImageStore, check_image_name, disk_usage, parse_ref, ref
from ._common import CliError, OperationFailed, load_config, open_store
from ._output import add_action, emit, print_fields


def register(sub) -> None:
    p = sub.add_parser("images", help="list, inspect, delete, chroot into, rename, copy, export or import images")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    add_action(actions, "list", "every image, its current version and settings", list_images, json=True)
    for name, func, text in (("show", show, "details of one image (NAME) or one version (NAME:N)"),
                             ("versions", versions, "the versions of an image and their disk use")):
        add_action(actions, name, text, func, "name", json=True)
    q = add_action(actions, "delete", "delete an image (NAME) or one version (NAME:N)", delete, "ref:NAME[:N]")
    q.add_argument("--force", action="store_true", help="delete even if hosts are assigned the image")
    q = add_action(actions, "chroot", "open a shell inside an image to edit it with its own tools", chroot,
                   "ref:NAME[:N]")
    # dest "run": "command" is the top-level parser's (the error prefix "si images: ...")
    q.add_argument("run", metavar="COMMAND", nargs=argparse.REMAINDER,
                   help="command to run instead of a shell, as typed (options for si go before NAME)")
    add_action(actions, "rename", "rename an image, every version of it, and the hosts that install it", rename,
               "old:OLD", "new:NEW")
    add_action(actions, "copy", "a new image NEW from NAME's current version (or NAME:N), sharing its files",
               copy, "ref:NAME[:N]", "new:NEW")
    q = add_action(actions, "export", "write an image version to one file: its tree, settings and master script",
                   export, "ref:NAME[:N]")
    q.add_argument("--output", "-o", type=Path, required=True, help="the file to write (a zstd-compressed tar)")
    q = add_action(actions, "import", "make an image version from a file 'si images export' wrote", import_image,
                   "archive:FILE")
    q.add_argument("--as", dest="as_name", metavar="NAME", help="under this name (default: the exported one)")


def _open_ref(args):
    """(config, store, name, version) for an action on NAME[:N] of an image that exists."""
    cfg = load_config(args)
    store = open_store(cfg)
    name, version = _wrap(lambda: parse_ref(args.ref))
    if store.image(name) is None:
        raise OperationFailed(f"image {name}: no such image (see 'si images list')")
    return cfg, store, name, version


def _wrap(func):
    try:
        return func()
    except ImageError as exc:      # mostly names and versions that do not fit: input
        raise CliError(str(exc)) from None


def _when(ts) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


def _size(n) -> str:
    return "-" if n is None else f"{n / 1e6:.1f} MB"


def list_images(args) -> int:
    cfg = load_config(args)
    store = open_store(cfg)
    images = store.images()
    emit(("image", "current", "versions", "golden client", "ip assignment", "post install", "created"),
         [(i["name"], i["latest"], i["versions"], i["golden_client"], i["ip_method"], i["post_install"],
           _when(i["created"])) for i in images],
         records=images, as_json=args.json, empty="no images yet (si getimage)")
    return 0


def show(args) -> int:
    cfg = load_config(args)
    store = open_store(cfg)
    name, version = _wrap(lambda: parse_ref(args.name))
    image = store.image(name)
    if image is None:
        raise OperationFailed(f"image {name}: no such image (see 'si images list')")
    if version is not None:
        v = store.image_version(name, version)
        if v is None:
            raise OperationFailed(f"image {ref(name, version)}: no such version (see 'si images versions {name}')")
        current = store.latest_image_version(name)
        is_current = bool(current and current["version"] == version)
        if args.json:
            print(json.dumps({**v, "current": is_current}, indent=2))
            return 0
        print_fields((("image", ref(name, version)), ("state", v["state"] + (" (current)" if is_current else "")),
                      ("path", v["path"]), ("size", _size(v["size"])), ("parent", v["parent"]),
                      ("rsync module", f"{name}@{version}"), ("created", _when(v["created"]))))
        return 0
    current = store.latest_image_version(name)
    hosts = [h.hostname for h in store.hosts() if h.image == name]
    stream = _fleet_stream(cfg, name, current["version"]) if current else None
    if args.json:
        print(json.dumps({**image, "current": current, "versions": store.image_versions(name), "hosts": hosts,
                          "fleet_stream": stream}, indent=2))
        return 0
    rows = [("image", name), ("path", str(ImageStore(cfg, store).current_link(name))),
            ("current version", f"{current['version']} ({current['path']}, {_size(current['size'])})"
             if current else "none complete"),
            ("versions", str(len(store.image_versions(name)))),
            ("golden client", image["golden_client"] or "-"),
            ("ip assignment", image["ip_method"] or "-"), ("post install", image["post_install"] or "-"),
            ("rsync modules", f"{name} (current), {name}@N (version N)"),
            ("fleet stream", _describe_stream(stream) if stream else "-"),
            ("hosts", ", ".join(hosts) or "-"),
            ("created", _when(image["created"]))]
    print_fields(rows)
    return 0


def _fleet_stream(cfg, name: str, version: int) -> dict:
    """The current version's stream for BitTorrent and multicast installs (services/fleet/pack.py)."""
    from services.fleet import pack

    from ..fleet import pack_dir
    directory = pack_dir(cfg, name, version)
    found = pack.read(directory)
    return {"version": version, "state": pack.state(directory), "bytes": found.size if found else None,
            "info_hash": found.info_hash if found else None}


def _describe_stream(stream: dict) -> str:
    if stream["state"] == "ready":
        return (f"ready for version {stream['version']}: {_size(stream['bytes'])} tar.zst, "
                f"torrent {stream['info_hash'][:12]}")
    if stream["state"] == "packing":
        return f"packing version {stream['version']} (the fleet service works in the background)"
    return ("not packed (the fleet service packs a current version when it runs, "
            "or on a machine's first BitTorrent or multicast install)")


def versions(args) -> int:
    cfg = load_config(args)
    store = open_store(cfg)
    name = _wrap(lambda: check_image_name(args.name))
    rows = store.image_versions(name)
    if not rows and store.image(name) is None:
        raise OperationFailed(f"image {name}: no such image (see 'si images list')")
    current = store.latest_image_version(name)
    seen: set = set()
    total = 0
    table = []
    for r in rows:
        path = Path(r["path"])
        added = disk_usage([path], seen) if path.exists() else 0
        total += added
        r["new_on_disk"] = added
        mark = " (current)" if current and r["version"] == current["version"] else ""
        table.append((f"{ref(name, r['version'])}{mark}", r["state"], r["parent"], _size(r["size"]),
                      _size(added), _when(r["created"]), r["path"]))
    emit(("version", "state", "parent", "size", "new on disk", "created", "path"), table, records=rows,
         as_json=args.json, title=f"{name}: versions (disk use counts files shared with older versions once)")
    if not args.json and sys.stdout.isatty():      # a pipe gets the records alone
        print(f"all versions together use {_size(total)} on disk")
    return 0


def delete(args) -> int:
    cfg = load_config(args)
    store = open_store(cfg)
    name, version = _wrap(lambda: parse_ref(args.ref))
    hosts = [h.hostname for h in store.hosts() if h.image == name]
    if version is None and hosts and not args.force:
        raise OperationFailed(f"image {name} is assigned to {len(hosts)} host(s) ({', '.join(hosts[:5])}"
                       f"{'...' if len(hosts) > 5 else ''}); reassign them or pass --force")
    removed = _wrap(lambda: ImageStore(cfg, store).delete(name, version))
    engine.refresh_daemon(cfg, store)
    store.event("images", "delete", ref(name, version) if version is not None else name)
    print(f"deleted {name} version(s) {', '.join(map(str, removed)) or '(none on disk)'}"
          + ("" if version is not None else f"; image {name} is gone"))
    return 0


def chroot(args) -> int:
    cfg, store, name, version = _open_ref(args)
    path = _wrap(lambda: ImageStore(cfg, store).path_of(name, version))
    command = args.run or ["/bin/sh"]
    if not (path / command[0].lstrip("/")).exists() and not args.run:
        raise CliError(f"image {args.ref}: {command[0]} does not exist inside {path}")
    if shutil.which("chroot") is None:
        raise OperationFailed("chroot not found (Debian package coreutils)")
    print(f"Entering {args.ref} at {path}. Changes apply to this version directly; files unchanged "
          "since the previous version are hard links shared with it, so replace a file "
          "(as package managers and editors do) rather than write into it. 'exit' returns.")
    return subprocess.call(["chroot", str(path), *command])


# --- whole images: rename, copy, export, import -------------------------------------
def _master(cfg, store, image: str) -> str:
    from ..autoinstall.render import write_master_script
    try:
        return str(write_master_script(cfg, store, image, note=print))
    except Exception as exc:       # an image without the files a plan needs still moves
        return f"not written ({exc})"


def _progress(verb: str):
    """Bytes so far, on one line of a terminal; nothing when stderr is not one."""
    if not sys.stderr.isatty():
        return lambda _n: None
    return lambda n: print(f"\r{verb} {n / 2**20:,.0f} MiB", end="", file=sys.stderr, flush=True)


def rename(args) -> int:
    from ..clients import _link
    from ..image_moves import rename as rename_image
    cfg = load_config(args)
    store = open_store(cfg)
    old_master = cfg.scripts_dir / f"{args.old}.master"
    moved = _wrap(lambda: rename_image(cfg, store, args.old, args.new))
    if old_master.exists():
        new_master = cfg.scripts_dir / f"{args.new}.master"
        os.replace(old_master, new_master)        # an edit by hand is then kept by the rewrite below
    master = _master(cfg, store, args.new)
    kept = []
    for host in (h for h in store.hosts() if h.image == args.new):
        if _link(cfg.scripts_dir, host.hostname, args.new) == "kept":
            kept.append(host.hostname)
    engine.refresh_daemon(cfg, store)
    store.event("images", "rename", f"{args.old} -> {args.new} ({moved} host(s))")
    print(f"renamed {args.old} to {args.new}; {moved} host(s) now install {args.new}; master script: {master}")
    if kept:
        print(f"edited per-host scripts still name {args.old}, check them: "
              + ", ".join(f"{cfg.scripts_dir}/{h}.sh" for h in kept))
    return 0


def copy(args) -> int:
    from ..image_moves import copy as copy_image
    cfg, store, name, version = _open_ref(args)
    made = _wrap(lambda: copy_image(cfg, store, name, version, args.new))
    engine.refresh_daemon(cfg, store)
    store.event("images", "copy", f"{args.ref} -> {ref(args.new, made)}")
    print(f"copied {args.ref} to {ref(args.new, made)} (files shared by hard links); "
          f"master script: {_master(cfg, store, args.new)}")
    return 0


def export(args) -> int:
    from ..image_moves import export as export_image
    cfg, store, name, version = _open_ref(args)
    if args.output.is_dir():
        raise CliError(f"--output: {args.output} is a directory; name the file to write")
    try:
        meta = export_image(cfg, store, name, version, args.output, _progress("exported"))
    except ImageError as exc:
        raise OperationFailed(str(exc)) from None
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"exported {ref(name, meta['version'])} to {args.output} ({args.output.stat().st_size / 1e6:.1f} MB)")
    return 0


def import_image(args) -> int:
    from ..autoinstall.render import edited_by_hand
    from ..image_moves import archived_master, import_, read_meta
    cfg = load_config(args)
    store = open_store(cfg)
    args.archive = Path(args.archive)
    meta = _wrap(lambda: read_meta(args.archive))
    if args.as_name:
        _wrap(lambda: check_image_name(args.as_name))
    try:
        name, version, _ = import_(cfg, store, args.archive, args.as_name, _progress("imported"))
    except ImageError as exc:
        raise OperationFailed(str(exc)) from None
    if sys.stderr.isatty():
        print(file=sys.stderr)
    engine.refresh_daemon(cfg, store)
    store.event("images", "import", f"{ref(name, version)} from {args.archive.name} "
                                    f"({ref(meta['image'], meta['version'])} when exported)")
    print(f"imported {args.archive} as {ref(name, version)}; master script: {_master(cfg, store, name)}")
    carried = archived_master(args.archive, meta["image"])
    if carried and edited_by_hand(carried):
        kept = cfg.scripts_dir / f"{name}.master.imported"
        from services.atomicfile import write_atomic
        write_atomic(kept, carried, mode=0o644)
        print(f"its master script had been edited by hand: that one is kept as {kept}")
    return 0

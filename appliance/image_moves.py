"""Images moved whole: copied or renamed inside the store, exported to one file, imported from one.

An export is one zstd-compressed tar (GNU tar): first `systemimager-image.json`, what the store
knows of the version (its name and number, size, golden client, IP assignment and post-install
action); then the image's master script when there is one (`master/NAME.master`); then the tree
under `tree/`, with owners by number, ACLs, extended attributes, hard links and sparse files kept.
The partition schemes travel inside the tree, where prepareclient put them (etc/systemimager/).
An import makes the next version of its image, as a getimage would.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Callable

from .config import Config
from .images import (VERSIONS, ImageError, ImageStore, check_image_name, clone_tree, disk_usage, ref,
                     remove_tree)

FORMAT = 1
META = "systemimager-image.json"
TAR_KEEP = ["--numeric-owner", "--acls", "--xattrs", "--xattrs-include=*"]
ProgressFn = Callable[[int], None]      # bytes so far (written by an export, unpacked by an import)


def _no_image(store, name: str) -> None:
    if store.image(check_image_name(name)) is not None:
        raise ImageError(f"image {name} already exists (see 'si images list')")


def copy(cfg: Config, store, source: str, version: int | None, dest: str) -> int:
    """DEST's version 1, a copy of SOURCE's (current) version that shares its files by hard links:
    versions are never changed in place, so sharing costs nothing and risks nothing."""
    images = ImageStore(cfg, store)
    _no_image(store, dest)
    src = images.path_of(source, version)
    row, src_version = store.image(source), store.image_version(source, int(src.name))
    with images.locked(dest):
        target = images.begin(dest, golden_client=row["golden_client"], ip_method=row["ip_method"],
                              post_install=row["post_install"])
        if not clone_tree(src, target.path):
            images.abandon(target)
            raise ImageError(f"copying {ref(source, src_version['version'])} to {dest} failed (cp -a --link)")
        images.commit(target, src_version["size"])
    return target.version


def rename(cfg: Config, store, old: str, new: str) -> int:
    """Every version of OLD becomes NEW's, and the hosts that install OLD install NEW; returns
    how many hosts moved. The tree moves by one rename(2), so nothing is copied."""
    images = ImageStore(cfg, store)
    if store.image(check_image_name(old)) is None:
        raise ImageError(f"image {old}: no such image (see 'si images list')")
    _no_image(store, new)
    old_dir, new_dir = images.root / VERSIONS / old, images.root / VERSIONS / new
    with images.locked(old), images.locked(new):
        if old_dir.exists():
            os.rename(old_dir, new_dir)
        try:
            moved = store.rename_image(old, new, str(old_dir), str(new_dir))
        except BaseException:
            if new_dir.exists():
                os.rename(new_dir, old_dir)       # the store said no: the tree goes back
            raise
        link = images.current_link(old)
        if link.is_symlink():
            link.unlink()
        images.point_current(new)
    return moved


# --- export and import ------------------------------------------------------------
def export(cfg: Config, store, name: str, version: int | None, out: Path,
           on_progress: ProgressFn = lambda _n: None) -> dict:
    """Write NAME's (current) version to `out` (written whole or not at all); returns its metadata."""
    images = ImageStore(cfg, store)
    tree = images.path_of(name, version)
    row, v = store.image(name), store.image_version(name, int(tree.name))
    meta = {"format": FORMAT, "image": name, "version": v["version"], "size": v["size"],
            "golden_client": row["golden_client"], "ip_method": row["ip_method"],
            "post_install": row["post_install"], "created": v["created"], "exported": time.time()}
    out = out.resolve()
    work = out.with_name(f".{out.name}.export-{os.getpid()}")
    part = out.with_name(f".{out.name}.part-{os.getpid()}")
    work.mkdir(parents=True)
    try:
        (work / META).write_text(json.dumps(meta, indent=1) + "\n")
        members = [META]
        master = cfg.scripts_dir / f"{name}.master"
        if master.is_file():
            (work / "master").mkdir()
            (work / "master" / master.name).write_bytes(master.read_bytes())
            members.append("master")
        # Tree members are renamed ./x -> tree/x, hard links' targets too, never symlinks' (S).
        cmd = ["tar", "--create", "--zstd", "--file", str(part), "--sparse", *TAR_KEEP,
               "--transform", r"s,^\./,tree/,S", "--transform", r"s,^\.$,tree,S",
               "-C", str(work), *members, "-C", str(tree), "."]
        _run_tar(cmd, lambda _proc: part.stat().st_size if part.exists() else 0, on_progress, "export")
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)
        remove_tree(work)
    return meta


def read_meta(archive: Path) -> dict:
    """The export's metadata (its first member), checked; ImageError if it is not an export."""
    if not archive.is_file():
        raise ImageError(f"{archive}: no such file")
    proc = subprocess.run(["tar", "--extract", "--zstd", "--file", str(archive), "--to-stdout",
                           "--occurrence=1", META], capture_output=True)
    try:
        meta = json.loads(proc.stdout) if proc.returncode == 0 else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise ImageError(f"{archive}: not an image export of 'si images export' (no {META} in a zstd tar)")
    if meta.get("format") != FORMAT:
        raise ImageError(f"{archive}: export format {meta.get('format')!r}, this appliance reads {FORMAT}")
    check_image_name(str(meta.get("image", "")))
    return meta


def import_(cfg: Config, store, archive: Path, name: str | None = None,
            on_progress: ProgressFn = lambda _n: None) -> tuple[str, int, dict]:
    """Unpack an export as the next version of `name` (default: the name it was exported as)."""
    meta = read_meta(archive)
    name = check_image_name(name or meta["image"])
    images = ImageStore(cfg, store)
    with images.locked(name):
        target = images.begin(name, golden_client=meta.get("golden_client"), ip_method=meta.get("ip_method"),
                              post_install=meta.get("post_install"))
        cmd = ["tar", "--extract", "--zstd", "--file", str(archive), "--directory", str(target.path),
               *TAR_KEEP, "--same-permissions", "--strip-components=1", "tree"]
        try:
            _run_tar(cmd, _bytes_read, on_progress, "import")
        except BaseException:
            # Nothing half-made stays: the version goes, and the image too if it has no other.
            remove_tree(target.path)
            store.delete_image_version(name, target.version)
            if not store.image_versions(name):
                store.delete_image(name)
                images.point_current(name)
            raise
        images.commit(target, meta.get("size") or disk_usage([target.path]))
    return name, target.version, meta


def archived_master(archive: Path, image: str) -> str | None:
    """The master script the export carried, if it had one."""
    proc = subprocess.run(["tar", "--extract", "--zstd", "--file", str(archive), "--to-stdout",
                           "--occurrence=1", f"master/{image}.master"], capture_output=True)
    return proc.stdout.decode(errors="replace") if proc.returncode == 0 and proc.stdout else None


def _bytes_read(proc: subprocess.Popen) -> int:
    """What tar has read of the unpacked stream so far (its rchar): about the tree's bytes."""
    try:
        for line in Path(f"/proc/{proc.pid}/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _run_tar(cmd: list[str], measure: Callable[[subprocess.Popen], int], on_progress: ProgressFn,
             what: str) -> None:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while proc.poll() is None:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                on_progress(measure(proc))
        err = proc.stderr.read()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        last = next((l for l in reversed(err.splitlines()) if l.strip()), f"exit {proc.returncode}")
        raise ImageError(f"{what} failed: {last}")

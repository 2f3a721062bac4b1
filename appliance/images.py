"""The image store: versions of each image on disk and in the store.

Layout under cfg.images_dir (the manual's `cd images/NAME; chroot .` still works):

    images/NAME                 symlink -> .versions/NAME/N, the current version
    images/.versions/NAME/N/    one directory per version (a whole system tree)
    images/.versions/NAME/.update-N/   staging for `getimage --update` (transient)

Only a complete version is ever made current; a pull that fails or is killed
leaves its version marked incomplete in the store and the symlink untouched.
A new version shares every unchanged file with its parent through hard links
(rsync --link-dest), so it costs only what changed. Because linked files share
one inode, nothing here ever modifies an existing version's file in place.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import os
import shutil
import stat
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from services.names import valid_image_name

from .config import Config

VERSIONS = ".versions"


class ImageError(ValueError):
    """An image operation cannot be done; the message says why, in one line."""


def check_image_name(name: str) -> str:
    if not valid_image_name(name):
        raise ImageError(f"image name {name!r} is not allowed: use 1-64 letters, digits and "
                         "'_' '.' '+' '-', starting with a letter or digit, without '..' or '/'")
    return name


def parse_ref(text: str) -> tuple[str, int | None]:
    """'NAME' or 'NAME:N' -> (name, version or None): the one spelling of a version, as
    updateclient and pushupdate take it. 'NAME@N' (the rsync module's name) is read too."""
    sep = ":" if ":" in text else "@"
    name, found, version = text.partition(sep)
    check_image_name(name)
    if not found:
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise ImageError(f"image version in {text!r} must be a positive number (NAME:N)")
    return name, int(version)


def ref(name: str, version: int) -> str:
    """How a version is spelt to the user: NAME:N."""
    return f"{name}:{version}"


@dataclass(frozen=True)
class Target:
    """Where a pull writes and what it builds on."""
    image: str
    version: int
    path: Path               # the version directory once complete
    write_to: Path           # where rsync writes (path itself, or a staging dir for --update)
    link_dest: Path | None   # the parent version whose unchanged files are hard-linked
    parent: int | None
    update: bool


class ImageStore:
    def __init__(self, cfg: Config, store) -> None:
        self.cfg = cfg
        self.store = store
        self.root = cfg.images_dir

    # --- paths -----------------------------------------------------------
    def version_dir(self, image: str, version: int) -> Path:
        return self.root / VERSIONS / check_image_name(image) / str(version)

    def current_link(self, image: str) -> Path:
        return self.root / check_image_name(image)

    def current(self, image: str) -> dict | None:
        return self.store.latest_image_version(check_image_name(image))

    def path_of(self, image: str, version: int | None = None) -> Path:
        """The directory of a complete version (the current one by default)."""
        row = (self.store.image_version(image, version) if version is not None
               else self.current(image))
        if row is None or row["state"] != "complete":
            what = ref(image, version) if version is not None else image
            known = self.store.image(image)
            raise ImageError(f"image {what}: no such complete version" +
                             ("" if known else " (see 'si images list')"))
        return Path(row["path"])

    # --- pulls -------------------------------------------------------------
    @contextmanager
    def locked(self, image: str) -> Iterator[None]:
        """One pull or delete per image at a time (a second one is refused)."""
        self.cfg.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.cfg.run_dir / f"image-{check_image_name(image)}.lock", "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ImageError(f"image {image}: another getimage or delete is working on it") from None
            yield

    def begin(self, image: str, *, update: bool = False, golden_client: str | None = None,
              ip_method: str | None = None, post_install: str | None = None) -> Target:
        """Prepare a pull: a new incomplete version, or a staging dir for --update."""
        check_image_name(image)
        current = self.current(image)
        (self.root / VERSIONS / image).mkdir(parents=True, exist_ok=True)
        if update and current is not None:
            path = Path(current["path"])
            staging = path.parent / f".update-{current['version']}"
            remove_tree(staging)  # a killed earlier --update; start clean
            # The version row stays complete: the live tree is untouched until the swap.
            self.store.set_image_details(image, ip_method=ip_method, post_install=post_install,
                                         golden_client=golden_client)
            return Target(image, current["version"], path, staging, path, current["version"], True)
        versions = self.store.image_versions(image)
        # The newest version left incomplete by a failed pull is reused (started afresh).
        if versions and versions[-1]["state"] != "complete":
            number = versions[-1]["version"]
        else:
            number = self.store.next_image_version(image)
        path = self.version_dir(image, number)
        remove_tree(path)
        path.mkdir(parents=True)
        parent = current["version"] if current else None
        self.store.add_image_version(image, number, str(path), parent=parent, golden_client=golden_client,
                                     ip_method=ip_method, post_install=post_install)
        return Target(image, number, path, path, Path(current["path"]) if current else None, parent, False)

    def commit(self, target: Target, size: int | None) -> None:
        """The pull succeeded: make its version current."""
        if target.update:
            _exchange(target.write_to, target.path)  # atomic: readers see old or new, never neither
            remove_tree(target.write_to)            # now holds the old tree
        self.store.finish_image_version(target.image, target.version, size)
        self.point_current(target.image)

    def reset_dir(self, path: Path) -> None:
        remove_tree(path)
        path.mkdir(parents=True)

    def abandon(self, target: Target) -> None:
        """The pull failed: the version stays incomplete; staging for --update goes."""
        if target.update:
            remove_tree(target.write_to)

    def reconcile(self) -> list[str]:
        """Point every image's link at its newest complete version; the images whose link was wrong.

        The store says which version is current; the link follows it. A getimage
        killed between the two (after the commit, before the link) left it behind.
        """
        fixed = []
        for image in self.store.images():
            name = image["name"]
            link, current = self.current_link(name), self.current(name)
            want = os.path.relpath(current["path"], link.parent) if current else None
            have = os.readlink(link) if link.is_symlink() else None
            if want != have:
                self.point_current(name)
                fixed.append(name)
        return fixed

    def point_current(self, image: str) -> Path | None:
        """Point images/NAME at the newest complete version (or remove it if none)."""
        link = self.current_link(image)
        current = self.current(image)
        if current is None:
            if link.is_symlink():
                link.unlink()
            return None
        target = os.path.relpath(current["path"], link.parent)
        tmp = link.with_name(f".{image}.link-tmp")
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(target, tmp)
        if link.exists() and not link.is_symlink():
            raise ImageError(f"{link} is a real directory, not the link this store manages; move it away")
        os.replace(tmp, link)
        return link

    # --- deletion ----------------------------------------------------------
    def delete(self, image: str, version: int | None = None) -> list[int]:
        """Delete one version or the whole image; returns the versions removed."""
        check_image_name(image)
        if self.store.image(image) is None:
            raise ImageError(f"image {image}: no such image (see 'si images list')")
        rows = self.store.image_versions(image)
        if version is not None:
            rows = [r for r in rows if r["version"] == version]
            if not rows:
                raise ImageError(f"image {ref(image, version)}: no such version (see 'si images versions {image}')")
        with self.locked(image):
            for row in rows:
                remove_tree(Path(row["path"]))
                self.store.delete_image_version(image, row["version"])
            if version is None:
                self.store.delete_image(image)
                remove_tree(self.root / VERSIONS / image)
            self.point_current(image)
        return [r["version"] for r in rows]

    def versions(self, image: str) -> list[dict]:
        check_image_name(image)
        return self.store.image_versions(image)


def disk_usage(paths: list[Path], seen: set[tuple[int, int]] | None = None) -> int:
    """Bytes on disk used by the trees together, each inode counted once (like du).

    Pass the same `seen` set to successive calls to get what each tree adds.
    """
    seen = set() if seen is None else seen
    total = 0
    for top in paths:
        for dirpath, _dirs, filenames in os.walk(top):
            for p in [dirpath, *(os.path.join(dirpath, n) for n in filenames)]:
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512
    return total


def remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> None:
    """Swap two directories atomically (renameat2 RENAME_EXCHANGE), else two renames."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is not None:
        if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return
    aside = b.with_name(b.name + ".old")
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)


# --- cheap new versions: a hard-link clone, then rsync in place ---------------
# rsync --link-dest re-resolves every path component securely for each file
# (rsync 3.4+), costing seconds per 30,000 files; `cp -al` clones the same tree
# in a fraction of that. rsync then writes changed files to temp names and
# renames them over, so the parent's inodes are never written; the only
# in-place writes it makes are attribute changes, so files whose attributes
# alone change get their own inode first (break_links).

def clone_tree(src: Path, dest: Path) -> bool:
    """Fill dest with hard links to src's files (directories are new); False if cp failed."""
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["cp", "-a", "--link", "--", f"{src}/.", f"{dest}/"], capture_output=True, text=True)
    return proc.returncode == 0


def break_links(tree: Path, names: list[str]) -> int:
    """Give each named entry (and the other names of its inode in tree) a private copy."""
    inodes: dict[tuple[int, int], list[str]] | None = None
    done: set[tuple[int, int]] = set()
    broken = 0
    for name in names:
        path = tree / name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        key = (st.st_dev, st.st_ino)
        if stat.S_ISDIR(st.st_mode) or st.st_nlink < 2 or key in done:
            continue
        group = [name]
        if st.st_nlink > 2:  # maybe other names of this inode inside the tree: keep them together
            if inodes is None:
                inodes = _inode_map(tree)
            group = inodes.get(key, [name])
        first = tree / group[0]
        tmp = first.with_name(f".si-private-{os.getpid()}-{first.name}"[:250])
        subprocess.run(["cp", "-a", "--", str(first), str(tmp)], check=True)
        os.replace(tmp, first)
        for other in group[1:]:
            link_tmp = (tree / other).with_name(f".si-link-{os.getpid()}")
            os.link(first, link_tmp)
            os.replace(link_tmp, tree / other)
        done.add(key)
        broken += 1
    return broken


def _inode_map(tree: Path) -> dict[tuple[int, int], list[str]]:
    out: dict[tuple[int, int], list[str]] = {}
    for dirpath, _dirs, filenames in os.walk(tree):
        for n in filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            if st.st_nlink > 1:
                out.setdefault((st.st_dev, st.st_ino), []).append(os.path.relpath(p, tree))
    return out

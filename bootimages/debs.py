"""Debian packages for the boot image: found with the host's apt, cached, unpacked.

Downloads land in a cache directory named after the exact .deb apt would
fetch (from `apt-cache show`, which reads local lists only), so a second build
needs no network; with no network and an older .deb of the package in the
cache, that one is used.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ARCH = "amd64"


class PackageError(RuntimeError):
    """apt cannot find or fetch a package, or a .deb cannot be unpacked."""


def default_cache_dir() -> Path:
    if env := os.environ.get("SI_BOOTIMAGE_CACHE"):
        return Path(env)
    system = Path("/var/cache/systemimager/bootimages")
    if os.geteuid() == 0:
        return system
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "systemimager" / "bootimages"


def _run(*cmd: str, cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    except FileNotFoundError:
        raise PackageError(f"{cmd[0]} is not installed (a Debian host with apt and dpkg is needed)") from None
    if proc.returncode != 0:
        raise PackageError(f"{' '.join(cmd)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def current_kernel_version() -> str:
    """The version the linux-image-amd64 metapackage points at, e.g. 6.1.0-56-amd64."""
    out = _run("apt-cache", "depends", f"linux-image-{ARCH}")
    for line in out.splitlines():
        m = re.match(r"\s*Depends:\s*linux-image-(\S+)$", line)
        if m:
            return m.group(1)
    raise PackageError(f"apt-cache depends linux-image-{ARCH}: no linux-image dependency found")


def candidate_filenames(packages: list[str]) -> dict[str, str]:
    """{package: the .deb name `apt-get download` writes} for those apt knows (virtual ones are left out).

    That name is package_version_arch.deb with the epoch's ':' written %3a,
    unlike the pool Filename, which drops the epoch.
    """
    proc = subprocess.run(["apt-cache", "show", "--no-all-versions", *packages], capture_output=True, text=True)
    names: dict[str, str] = {}
    for stanza in proc.stdout.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " ")
        pkg = fields.get("Package")
        if pkg in packages and "Version" in fields and "Architecture" in fields:
            version = fields["Version"].replace(":", "%3a")
            names.setdefault(pkg, f"{pkg}_{version}_{fields['Architecture']}.deb")
    return names


class DebCache:
    def __init__(self, root: Path) -> None:
        self.dir = Path(root) / "debs"

    def _download(self, packages: list[str]) -> None:
        cmd = ["apt-get", "download", "-q", *packages]
        if os.geteuid() == 0:  # apt's _apt sandbox user cannot write our cache dir
            cmd[1:1] = ["-o", "APT::Sandbox::User=root"]
        _run(*cmd, cwd=self.dir)

    def fetch_many(self, packages: list[str]) -> dict[str, Path]:
        """Fetch packages in one apt call; reuse cached .debs. Unknown ones are left out."""
        self.dir.mkdir(parents=True, exist_ok=True)
        names = candidate_filenames(packages)
        todo = [p for p, n in names.items() if not (self.dir / n).exists()]
        if todo:
            try:
                self._download(todo)
            except PackageError:
                for p in todo:          # one bad package must not sink the others
                    try:
                        self._download([p])
                    except PackageError:
                        pass
        found = {}
        for p in packages:
            if p in names and (self.dir / names[p]).exists():
                found[p] = self.dir / names[p]
            elif older := sorted(self.dir.glob(f"{p}_*_*.deb"), key=lambda f: f.stat().st_mtime):
                found[p] = older[-1]   # offline: the newest we have
        return found

    def fetch(self, package: str) -> Path:
        found = self.fetch_many([package])
        if package not in found:
            raise PackageError(f"apt cannot find or download {package} (apt-get update? network?)")
        return found[package]


def extract(deb: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    _run("dpkg-deb", "-x", str(deb), str(dest))


def unpack_kernel(deb: Path, dest: Path, version: str) -> tuple[Path, Path]:
    """Unpack a linux-image .deb: (its vmlinuz, its modules directory).

    Debian 12 ships the modules under /lib/modules, Debian 13 under
    /usr/lib/modules; a lib -> usr/lib link (as on a merged-/usr system) lets
    `depmod -b dest` find them either way.
    """
    extract(deb, dest)
    if not (dest / "lib").exists() and (dest / "usr" / "lib").is_dir():
        (dest / "lib").symlink_to("usr/lib")
    moddir = dest / "lib" / "modules" / version
    if not moddir.is_dir():
        raise PackageError(f"{deb.name} has no modules for {version} under /lib/modules or /usr/lib/modules")
    return dest / "boot" / f"vmlinuz-{version}", moddir


def depends(deb: Path) -> list[str]:
    """Package names a .deb depends on (first alternative of each, versions dropped)."""
    out = _run("dpkg-deb", "-f", str(deb), "Pre-Depends", "Depends")
    names = []
    for line in out.splitlines():
        _, _, value = line.partition(":")
        for clause in value.split(","):
            first = clause.split("|")[0].strip()
            name = re.split(r"[\s(:]", first, maxsplit=1)[0]
            if name and name not in names:
                names.append(name)
    return names

"""Kernel modules: which files a set of module names needs, in load order.

Dependencies come from modules.dep when the tree has one (a custom kernel's
`make modules_install` writes it); Debian's linux-image packages do not ship
it (depmod runs at install time), so otherwise each module's own .modinfo
`depends=` field is read, which is what depmod itself uses for the order.
"""
from __future__ import annotations

import gzip
import lzma
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .elf import ElfError, read_section

SUFFIXES = (".ko", ".ko.xz", ".ko.gz", ".ko.zst")


class ModuleError(ValueError):
    """A module is unknown or its dependencies cannot be resolved."""


def norm(name: str) -> str:
    """Module names treat '-' and '_' alike (nvme-core == nvme_core)."""
    return name.replace("-", "_")


def module_name(relpath: str) -> str:
    base = relpath.rsplit("/", 1)[-1]
    for suffix in SUFFIXES:
        if base.endswith(suffix):
            return norm(base[: -len(suffix)])
    raise ModuleError(f"{relpath}: not a kernel module file")


def parse_modules_dep(text: str) -> dict[str, list[str]]:
    """modules.dep lines: `kernel/a/b.ko: kernel/c.ko kernel/d.ko` (deps in load-reverse order)."""
    deps: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        path, sep, rest = line.partition(":")
        if not sep:
            raise ModuleError(f"modules.dep: malformed line {line!r}")
        deps[path.strip()] = rest.split()
    return deps


def load_bytes(path: Path) -> bytes:
    """A module's ELF image, decompressed if the tree stores it compressed."""
    name = path.name
    if name.endswith(".xz"):
        return lzma.decompress(path.read_bytes())
    if name.endswith(".gz"):
        return gzip.decompress(path.read_bytes())
    if name.endswith(".zst"):
        if not shutil.which("zstd"):
            raise ModuleError(f"{path}: zstd-compressed module and no zstd tool to read it")
        return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
    return path.read_bytes()


def modinfo(data: bytes) -> dict[str, list[str]]:
    """The key=value strings of a module's .modinfo section."""
    try:
        raw = read_section(data, ".modinfo")
    except ElfError as exc:
        raise ModuleError(str(exc)) from None
    info: dict[str, list[str]] = {}
    for item in (raw or b"").split(b"\0"):
        key, sep, value = item.decode("utf-8", "replace").partition("=")
        if sep:
            info.setdefault(key, []).append(value)
    return info


@dataclass
class ModuleIndex:
    """The modules of one kernel tree (/lib/modules/<version>)."""

    root: Path
    paths: dict[str, str] = field(default_factory=dict)      # name -> relpath
    builtin: set[str] = field(default_factory=set)
    _deps: dict[str, list[str]] | None = None                 # relpath -> dep relpaths

    @classmethod
    def scan(cls, root: Path) -> "ModuleIndex":
        root = Path(root)
        if not root.is_dir():
            raise ModuleError(f"{root}: no such modules directory")
        index = cls(root)
        for path in sorted(root.rglob("*.ko*")):
            rel = path.relative_to(root).as_posix()
            if rel.endswith(SUFFIXES):
                index.paths.setdefault(module_name(rel), rel)
        builtin = root / "modules.builtin"
        if builtin.exists():
            index.builtin = {module_name(line.strip()) for line in builtin.read_text().splitlines() if line.strip()}
        dep_file = root / "modules.dep"
        if dep_file.exists():
            index._deps = parse_modules_dep(dep_file.read_text())
        return index

    def direct_deps(self, name: str) -> list[str]:
        rel = self.paths[name]
        if self._deps is not None and rel in self._deps:
            return [module_name(d) for d in self._deps[rel]]
        depends = modinfo(load_bytes(self.root / rel)).get("depends", [""])[0]
        return [norm(d) for d in depends.split(",") if d]

    def resolve(self, names: list[str]) -> tuple[list[str], list[str]]:
        """(relpaths in load order, requested names that are built into the kernel)."""
        order: list[str] = []
        seen: set[str] = set()
        builtin: list[str] = []

        def visit(name: str, chain: tuple[str, ...]) -> None:
            if name in seen:
                return
            if name in chain:
                raise ModuleError(f"dependency loop: {' -> '.join(chain + (name,))}")
            if name not in self.paths:
                if name in self.builtin:
                    builtin.append(name)
                    seen.add(name)
                    return
                via = f" (needed by {chain[-1]})" if chain else ""
                raise ModuleError(f"module {name!r} is neither a module nor built into this kernel{via}")
            for dep in self.direct_deps(name):
                visit(dep, chain + (name,))
            seen.add(name)
            order.append(self.paths[name])

        for name in names:
            visit(norm(name), ())
        return order, builtin

"""Build the autoinstall kernel and initrd from Debian packages.

The pieces: a kernel (Debian's linux-image, or the user's own with its
modules tree), the modules the install needs with their dependencies,
busybox-static for the shell and applets, and the real tools the install
scripts use (rsync, sfdisk, mkfs.*, blkid) with exactly the shared libraries
their ELF headers ask for. All of it goes into a newc cpio written here,
compressed with gzip (every kernel reads it) or xz.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import debs
from .cpio import CpioWriter
from .elf import ElfError, is_elf, read_elf
from .modules import ModuleError, ModuleIndex, load_bytes, module_name

INITRD_FILES = Path(__file__).parent / "initrd"
BUILDER_VERSION = "1"
KEEP_BUILDS = 6

# Modules loaded at boot: common NICs, disk controllers, USB storage (for a
# local.cfg stick), file systems. Anything built in is simply skipped.
DEFAULT_MODULES = (
    # checksums ext4/xfs/libcrc32c ask the crypto API for; load them first
    "crc32c_generic", "crc32c_intel",
    # virtual machines
    "virtio_pci", "virtio_net", "virtio_blk", "virtio_scsi", "vmxnet3",
    # NICs
    "e1000", "e1000e", "igb", "igc", "ixgbe", "i40e", "r8169", "tg3", "bnx2", "bnxt_en",
    # disks
    "ahci", "ata_piix", "sd_mod", "sr_mod", "nvme", "megaraid_sas", "mpt3sas",
    # USB sticks and CDs carrying a local.cfg
    "xhci_pci", "ehci_pci", "ohci_pci", "uhci_hcd", "usb_storage", "uas",
    # file systems
    "ext4", "vfat", "isofs", "nls_cp437", "nls_iso8859_1", "nls_utf8", "nls_ascii", "af_packet",
)


@dataclass(frozen=True)
class Tool:
    package: str
    names: tuple[str, ...]
    modules: tuple[str, ...] = ()


TOOLS = {
    "busybox": Tool("busybox-static", ("busybox",)),
    "rsync": Tool("rsync", ("rsync",)),
    "sfdisk": Tool("fdisk", ("sfdisk",)),
    "e2fsprogs": Tool("e2fsprogs", ("mke2fs", "mkfs.ext2", "mkfs.ext3", "mkfs.ext4", "tune2fs", "e2label")),
    "dosfstools": Tool("dosfstools", ("mkfs.fat", "mkfs.vfat", "fatlabel")),
    "util-linux": Tool("util-linux", ("blkid", "wipefs")),
    # the fleet transports: the image's stream (GNU tar keeps ACLs and xattrs; busybox tar does not)
    "tar": Tool("tar", ("tar",)),
    "zstd": Tool("zstd", ("zstd",)),
    "aria2": Tool("aria2", ("aria2c",)),
    "ctorrent": Tool("ctorrent", ("ctorrent",)),   # the BitTorrent client (see the master script)
    "udpcast": Tool("udpcast", ("udp-receiver",)),
    # optional (--with): bigger, for images that need them
    "xfs": Tool("xfsprogs", ("mkfs.xfs",), ("xfs",)),
    "gdisk": Tool("gdisk", ("sgdisk",)),
}
DEFAULT_TOOLS = ("busybox", "rsync", "sfdisk", "e2fsprogs", "dosfstools", "util-linux",
                 "tar", "zstd", "udpcast", "ctorrent")
EXTRA_FILES = {"e2fsprogs": ("etc/mke2fs.conf",)}  # by package
LIB_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "usr/lib64", "lib", "usr/lib")
BIN_DIRS = ("usr/sbin", "usr/bin", "sbin", "bin")


class BuildError(RuntimeError):
    """The boot image cannot be built; the message says why."""


@dataclass(frozen=True)
class BuildOptions:
    output: Path
    kernel_version: str | None = None          # None: what linux-image-amd64 depends on
    extra_modules: tuple[str, ...] = ()
    extra_tools: tuple[str, ...] = ()          # keys of TOOLS beyond the default set
    kernel: Path | None = None                 # a custom kernel image ...
    modules_dir: Path | None = None            # ... and its /lib/modules/<version> tree
    compression: str = "gzip"                  # gzip | xz
    cache_dir: Path = field(default_factory=debs.default_cache_dir)
    use_cache: bool = True


@dataclass
class BuildResult:
    kernel: Path
    initrd: Path
    kernel_version: str
    initrd_size: int
    uncompressed_size: int
    files: int
    modules: list[str]
    builtin: list[str]
    libraries: list[str]
    seconds: float
    cached: bool = False

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["kernel"], d["initrd"] = str(self.kernel), str(self.initrd)
        return d


Step = Callable[[str], None]
Bytes = Callable[[int, int], None]


def _noop(*_a) -> None:
    pass


class Tree:
    """The initrd's contents, in the order the kernel must unpack them."""

    def __init__(self) -> None:
        self.items: dict[str, tuple] = {}

    def _parents(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.items.setdefault("/".join(parts[:i]), ("dir", 0o755))

    def dir(self, path: str, perm: int = 0o755) -> None:
        self._parents(path)
        self.items[path] = ("dir", perm)

    def file(self, path: str, data: bytes, perm: int = 0o644) -> None:
        self._parents(path)
        self.items[path] = ("file", data, perm)

    def symlink(self, path: str, target: str) -> None:
        self._parents(path)
        self.items.setdefault(path, ("link", target))

    def chardev(self, path: str, major: int, minor: int) -> None:
        self._parents(path)
        self.items[path] = ("chr", major, minor)

    def size(self) -> int:
        return sum(len(v[1]) for v in self.items.values() if v[0] == "file")

    def write(self, out, mtime: int, on_bytes: Bytes = _noop) -> CpioWriter:
        writer = CpioWriter(out, mtime=mtime)
        total, done = self.size(), 0
        # parents sort before children because they are path prefixes
        for path in sorted(self.items, key=lambda p: p.split("/")):
            kind, *rest = self.items[path]
            if kind == "dir":
                writer.directory(path, rest[0])
            elif kind == "file":
                writer.file(path, rest[0], rest[1])
                done += len(rest[0])
                on_bytes(done, total)
            elif kind == "link":
                writer.symlink(path, rest[0])
            else:
                writer.char_device(path, rest[0], rest[1])
        writer.close()
        return writer


def _usr(path: str) -> str:
    """Our initrd is usr-merged: /bin, /sbin, /lib, /lib64 link into /usr."""
    top = path.split("/", 1)[0]
    return "usr/" + path if top in ("bin", "sbin", "lib", "lib64") else path


def _find(root: Path, name: str, dirs: tuple[str, ...]) -> Path | None:
    for d in dirs:
        p = root / d / name
        if p.exists() or p.is_symlink():
            return p
    return None


def _inputs_key(opts: BuildOptions, kernel_version: str, packages: list[str]) -> str:
    h = hashlib.sha256()
    h.update(BUILDER_VERSION.encode())
    for src in sorted(Path(__file__).parent.rglob("*")):
        if src.is_file() and src.suffix in (".py", ".sh", "") and "__pycache__" not in src.parts:
            h.update(src.name.encode() + src.read_bytes())
    h.update(json.dumps([kernel_version, packages, sorted(opts.extra_modules), sorted(opts.extra_tools),
                         opts.compression]).encode())
    for custom in (opts.kernel, opts.modules_dir):
        if custom:
            st = custom.stat()
            h.update(f"{custom.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
            if custom.is_dir():
                for p in sorted(custom.rglob("*")):
                    h.update(f"{p}:{p.lstat().st_size}:{p.lstat().st_mtime_ns}".encode())
    return h.hexdigest()[:20]


class Builder:
    def __init__(self, opts: BuildOptions, step: Step = _noop, on_bytes: Bytes = _noop) -> None:
        self.opts = opts
        self.step = step
        self.on_bytes = on_bytes
        self.cache = debs.DebCache(opts.cache_dir)
        self.tree = Tree()
        self.fetched: dict[str, Path] = {}

    # --- packages --------------------------------------------------------
    def _fetch(self, package: str) -> Path:
        if package not in self.fetched:
            self._fetch_many([package])
            if package not in self.fetched:
                raise BuildError(f"apt cannot find or download {package} (apt-get update? network?)")
        return self.fetched[package]

    def _fetch_many(self, packages: list[str]) -> None:
        todo = [p for p in packages if p not in self.fetched]
        if todo:
            self.step(f"packages {' '.join(todo)}")
            self.fetched.update(self.cache.fetch_many(todo))

    def _tools(self) -> list[Tool]:
        unknown = [t for t in self.opts.extra_tools if t not in TOOLS]
        if unknown:
            raise BuildError(f"unknown tool set(s) {', '.join(unknown)}; known: {', '.join(TOOLS)}")
        return [TOOLS[t] for t in dict.fromkeys(DEFAULT_TOOLS + tuple(self.opts.extra_tools))]

    # --- the whole build -------------------------------------------------
    def build(self) -> BuildResult:
        started = time.monotonic()
        opts = self.opts
        out = Path(opts.output)
        if bool(opts.kernel) != bool(opts.modules_dir):
            raise BuildError("a custom kernel needs both --kernel FILE and --modules-dir DIR")
        if opts.compression not in ("gzip", "xz"):
            raise BuildError(f"compression {opts.compression!r}: use gzip or xz")
        tools = self._tools()
        if opts.kernel:
            if not opts.kernel.is_file():
                raise BuildError(f"--kernel {opts.kernel}: no such file")
            if not opts.modules_dir.is_dir():
                raise BuildError(f"--modules-dir {opts.modules_dir}: no such directory")
            kver = opts.modules_dir.name
        elif opts.kernel_version:
            kver = opts.kernel_version
        else:
            self.step("asking apt for the current kernel")
            kver = debs.current_kernel_version()
        packages = [t.package for t in tools] + ([] if opts.kernel else [f"linux-image-{kver}"])
        names = sorted(debs.candidate_filenames(packages).values()) or packages
        key = _inputs_key(opts, kver, names)
        cached = Path(opts.cache_dir) / "builds" / key
        if opts.use_cache and (cached / "result.json").exists() and self._still_current(cached):
            self.step("reusing the cached build")
            os.utime(cached)   # recently used: pruned last
            return self._install(cached, out, started, cached=True)

        with tempfile.TemporaryDirectory(prefix="si-bootimage-") as tmp:
            tmp = Path(tmp)
            pkgroot, kroot = tmp / "pkgs", tmp / "kernel"
            if opts.kernel:
                kernel_file, moddir = opts.kernel, opts.modules_dir
            else:
                deb = self._fetch(f"linux-image-{kver}")
                self.step(f"unpacking linux-image-{kver}")
                try:
                    kernel_file, moddir = debs.unpack_kernel(deb, kroot, kver)
                except debs.PackageError as exc:
                    raise BuildError(str(exc)) from None
            self.step("choosing kernel modules")
            modules, builtin = self._add_modules(moddir, kver, tools)
            self._fetch_many([t.package for t in tools])
            for tool in tools:
                debs.extract(self._fetch(tool.package), pkgroot)
            self.step("adding busybox and its applets")
            self._add_busybox(pkgroot)
            self.step("adding tools and the libraries they need")
            libs = self._add_tools(pkgroot, tools)
            self._add_init(kver)
            staging = tmp / "out"
            staging.mkdir()
            self.step(f"writing the initrd ({opts.compression})")
            raw = self._write_initrd(staging / "initrd.img")
            shutil.copyfile(kernel_file, staging / "kernel")
            info = {"kernel_version": kver, "uncompressed_size": raw,
                    "files": len(self.tree.items), "modules": modules, "builtin": builtin,
                    "libraries": libs, "packages": {p: d.name for p, d in sorted(self.fetched.items())}}
            (staging / "result.json").write_text(json.dumps(info, indent=1))
            if opts.use_cache:
                cached.parent.mkdir(parents=True, exist_ok=True)
                shutil.rmtree(cached, ignore_errors=True)
                shutil.copytree(staging, cached)
                _prune(cached.parent, keep=KEEP_BUILDS)
                return self._install(cached, out, started)
            return self._install(staging, out, started)

    @staticmethod
    def _still_current(cached: Path) -> bool:
        """A cached build is stale when apt now offers a newer .deb of any package in it (a libc fix)."""
        used = json.loads((cached / "result.json").read_text()).get("packages", {})
        now = debs.candidate_filenames(list(used))
        return all(now.get(p, name) == name for p, name in used.items())

    def _install(self, src: Path, out: Path, started: float, cached: bool = False) -> BuildResult:
        info = json.loads((src / "result.json").read_text())
        out.mkdir(parents=True, exist_ok=True)
        for name in ("kernel", "initrd.img"):
            tmp = out / f".{name}.tmp"
            shutil.copyfile(src / name, tmp)
            os.replace(tmp, out / name)
        return BuildResult(out / "kernel", out / "initrd.img", info["kernel_version"],
                           (out / "initrd.img").stat().st_size, info["uncompressed_size"], info["files"],
                           info["modules"], info["builtin"], info["libraries"],
                           round(time.monotonic() - started, 2), cached)

    # --- parts -----------------------------------------------------------
    def _add_modules(self, moddir: Path, kver: str, tools: list[Tool]) -> tuple[list[str], list[str]]:
        index = ModuleIndex.scan(moddir)
        wanted = list(DEFAULT_MODULES) + [m for t in tools for m in t.modules] + list(self.opts.extra_modules)
        # the default list is a wish list; only extra modules must exist
        present = [m for m in wanted if m in self.opts.extra_modules or
                   m.replace("-", "_") in index.paths or m.replace("-", "_") in index.builtin]
        try:
            order, builtin = index.resolve(present)
        except ModuleError as exc:
            raise BuildError(str(exc)) from None
        dep_lines = []
        deps_of: dict[str, str] = {}   # relpath in the tree -> relpath in the initrd
        for rel in order:
            data = load_bytes(moddir / rel)
            plain = rel
            for suffix in (".xz", ".gz", ".zst"):
                if plain.endswith(suffix):
                    plain = plain[: -len(suffix)]   # stored decompressed: busybox insmod reads plain ELF
            self.tree.file(f"usr/lib/modules/{kver}/{plain}", data)
            deps_of[rel] = plain
        for rel in order:
            deps = [deps_of[index.paths[d]] for d in index.direct_deps(module_name(rel)) if d in index.paths]
            dep_lines.append(f"{deps_of[rel]}: {' '.join(deps)}".rstrip())
        self.tree.file(f"usr/lib/modules/{kver}/modules.dep", ("\n".join(dep_lines) + "\n").encode())
        self.tree.file("etc/systemimager/modules.load", ("\n".join(deps_of[r] for r in order) + "\n").encode())
        return [deps_of[r] for r in order], builtin

    def _add_busybox(self, pkgroot: Path) -> None:
        bb = _find(pkgroot, "busybox", BIN_DIRS)
        if bb is None:
            raise BuildError("busybox-static did not provide a busybox binary")
        self.tree.file("usr/bin/busybox", bb.read_bytes(), 0o755)
        try:
            applets = subprocess.run([str(bb), "--list-full"], capture_output=True, text=True,
                                     check=True).stdout.split()
        except (OSError, subprocess.CalledProcessError) as exc:
            raise BuildError(f"cannot list busybox applets: {exc}") from None
        self._applets = applets

    def _add_tools(self, pkgroot: Path, tools: list[Tool]) -> list[str]:
        real: set[str] = set()
        elves: list[Path] = []
        for tool in tools:
            if tool.package == "busybox-static":
                continue
            for name in tool.names:
                src = _find(pkgroot, name, BIN_DIRS)
                if src is None:
                    raise BuildError(f"{tool.package} has no {name}")
                dest = _usr(src.relative_to(pkgroot).as_posix())
                target = src.resolve()
                self.tree.file(dest, target.read_bytes(), 0o755)
                real.add(name)
                if is_elf(target):
                    elves.append(target)
            for extra in EXTRA_FILES.get(tool.package, ()):
                if (pkgroot / extra).exists():
                    self.tree.file(extra, (pkgroot / extra).read_bytes())
        libs = self._add_libraries(pkgroot, elves, tools)
        for applet in self._applets:
            if applet.rsplit("/", 1)[-1] not in real and applet != "bin/busybox":
                self.tree.symlink(_usr(applet), "/usr/bin/busybox")
        return libs

    def _add_libraries(self, pkgroot: Path, elves: list[Path], tools: list[Tool]) -> list[str]:
        """Add the shared libraries the ELF files need, fetching library packages as needed."""
        done: dict[str, Path] = {}
        interps: set[str] = set()
        pending = list(elves)
        expanded: set[str] = set()
        unavailable: set[str] = set()
        frontier = [t.package for t in tools]
        while True:
            missing: list[str] = []
            while pending:
                try:
                    info = read_elf(pending.pop())
                except ElfError as exc:
                    raise BuildError(str(exc)) from None
                if info.interpreter:
                    interps.add(info.interpreter)
                for soname in info.needed + ((Path(info.interpreter).name,) if info.interpreter else ()):
                    if soname in done:
                        continue
                    found = _find(pkgroot, soname, LIB_DIRS)
                    if found is None:
                        missing.append(soname)
                        continue
                    done[soname] = found.resolve()
                    pending.append(done[soname])
            if not missing:
                break
            # fetch what the packages we hold depend on, one level at a time
            nxt = []
            for pkg in frontier:
                if pkg in expanded or pkg in unavailable:
                    continue
                expanded.add(pkg)
                nxt += [d for d in debs.depends(self._fetch(pkg)) if d not in self.fetched and d not in nxt]
            if not nxt:
                raise BuildError(f"no package provides {', '.join(sorted(set(missing)))}")
            self._fetch_many(nxt)
            for pkg in nxt:   # virtual or unavailable ones were left out: another may provide the library
                if pkg in self.fetched:
                    debs.extract(self.fetched[pkg], pkgroot)
                else:
                    unavailable.add(pkg)   # e.g. bookworm's libgcc1, a name libgcc-s1 provides
            frontier = nxt
            pending = [Path(p) for p in elves] + list(done.values())
        for soname, path in sorted(done.items()):
            self.tree.file(f"usr/lib/x86_64-linux-gnu/{soname}", path.read_bytes(), 0o755)
        for interp in interps:
            self.tree.symlink(_usr(interp.lstrip("/")), f"/usr/lib/x86_64-linux-gnu/{Path(interp).name}")
        return sorted(done)

    def _add_init(self, kver: str) -> None:
        t = self.tree
        for d in ("proc", "sys", "dev", "run", "mnt", "root", "usr/bin", "usr/sbin", "usr/lib64", "var/log"):
            t.dir(d)
        t.dir("tmp", 0o1777)
        for top in ("bin", "sbin", "lib", "lib64"):
            t.symlink(top, f"usr/{top}")
        t.chardev("dev/console", 5, 1)
        t.file("init", (INITRD_FILES / "init.sh").read_bytes(), 0o755)
        t.file("usr/lib/systemimager/functions.sh", (INITRD_FILES / "functions.sh").read_bytes())
        t.file("usr/lib/systemimager/udhcpc.script", (INITRD_FILES / "udhcpc.script").read_bytes(), 0o755)
        t.file("usr/bin/si-autoinstall", (INITRD_FILES / "si-autoinstall").read_bytes(), 0o755)
        t.file("usr/bin/si-command", (INITRD_FILES / "si-command").read_bytes(), 0o755)
        for cmd in ("si-progress", "si-log", "si-fail", "si-done"):
            t.symlink(f"usr/bin/{cmd}", "si-command")
        t.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        t.file("etc/group", b"root:x:0:\n")
        t.file("etc/profile", b"export PATH=/usr/sbin:/usr/bin PS1='si-autoinstall# '\n"
                              b". /usr/lib/systemimager/functions.sh\n")
        t.file("etc/systemimager/build", f"SystemImager bootimage {BUILDER_VERSION} for {kver}\n".encode())

    def _write_initrd(self, path: Path) -> int:
        mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
        with open(path, "wb") as raw:
            if self.opts.compression == "xz":
                # the kernel's xz decoder wants CRC32 checks; BCJ helps x86 code
                stream = lzma.LZMAFile(raw, "wb", format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32,
                                       filters=[{"id": lzma.FILTER_X86},
                                                {"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": 1 << 20}])
            else:
                stream = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=mtime)
            with stream:
                writer = self.tree.write(stream, mtime, self.on_bytes)
        return writer.bytes_written


def _prune(builds: Path, keep: int) -> None:
    """Keep the newest few cached builds (about 20 MB each)."""
    entries = sorted((p for p in builds.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def build(opts: BuildOptions, step: Step = _noop, on_bytes: Bytes = _noop) -> BuildResult:
    try:
        return Builder(opts, step, on_bytes).build()
    except debs.PackageError as exc:
        raise BuildError(str(exc)) from None

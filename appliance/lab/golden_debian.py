"""A fuller golden client: Debian bookworm from debootstrap (minbase) with systemd.

What a cluster node needs and little more: systemd as init, Debian's kernel
with an initramfs-tools initramfs, GRUB for BIOS and UEFI (grub-install and
update-grub inside the system, as the install script runs them), iproute2,
and systemd-networkd asking DHCP on any wired interface. On boot a small unit
(after network-online.target) prints on the serial console
"SI-DEBIAN-BOOTED hostname=... ip=... systemd=<state> ..." so a test sees the
installed machine come up with the name and address the appliance gave it.

The tree is built once and kept as a tarball in CACHE_DIR, named by a hash of
the recipe (suite, mirror, packages, the files it adds); later runs, and CI
on the same machine, unpack it onto a GPT disk like golden.py's.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from services.debian_packages import require

from .golden import FILES, Golden, gpt_root_disk, write_fstab
from .netns import run_checked

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# shim-signed and grub-efi-amd64-signed: the install puts a Secure Boot chain on the ESP.
# python3: the client tools (updateclient) run on the installed machine.
PACKAGES = ("systemd-sysv", "linux-image-amd64", "initramfs-tools", "grub-pc-bin", "grub-efi-amd64-bin",
            "grub2-common", "iproute2", "shim-signed", "grub-efi-amd64-signed", "python3")
RECIPE = 4          # bump when build() changes what ends up in the tree
CACHE_DIR = Path(os.environ.get("SI_LAB_CACHE", "/var/cache/systemimager/lab"))
DEBIAN_FILES = FILES / "debian"
DISK_SIZE = "1536M"
NEEDS = ("debootstrap", "zstd", "sfdisk", "mkfs.vfat")

Progress = Callable[[str], None]


def host_mirror(apt: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses for SUITE (SI_DEBIAN_MIRROR overrides it)."""
    if os.environ.get("SI_DEBIAN_MIRROR"):
        return os.environ["SI_DEBIAN_MIRROR"]
    for f in sorted(apt.glob("sources.list.d/*.sources")):      # deb822 stanzas
        for stanza in f.read_text(errors="replace").split("\n\n"):
            fields = dict(line.split(":", 1) for line in stanza.splitlines()
                          if ":" in line and not line.startswith((" ", "#")))
            fields = {k.strip().lower(): v.split() for k, v in fields.items()}
            if "deb" in fields.get("types", []) and SUITE in fields.get("suites", []) \
                    and "main" in fields.get("components", []) and fields.get("uris"):
                return fields["uris"][0]
    for f in [apt / "sources.list", *sorted(apt.glob("sources.list.d/*.list"))]:  # one-line format
        for line in (f.read_text(errors="replace") if f.is_file() else "").splitlines():
            words = line.split("#", 1)[0].split()
            if not words or words[0] != "deb":
                continue
            words = words[1:]
            if words and words[0].startswith("["):            # deb [signed-by=... arch=...] URI ...
                while words and not words[0].endswith("]"):
                    words.pop(0)
                words = words[1:]
            if len(words) >= 3 and words[1] == SUITE and "main" in words[2:]:
                return words[0]
    return DEFAULT_MIRROR


MIRROR = host_mirror()


def _say(line: str) -> None:
    print(f"[debian golden] {line}", file=sys.stderr, flush=True)


def require_tools() -> None:
    require(*NEEDS)


def recipe_hash() -> str:
    h = hashlib.sha256(f"{RECIPE} {SUITE} {MIRROR} {' '.join(sorted(PACKAGES))}\n".encode())
    for f in sorted(DEBIAN_FILES.iterdir()):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def tarball_path() -> Path:
    return CACHE_DIR / f"debian-golden-{recipe_hash()}.tar.zst"


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve())
    with open("/proc/mounts") as f:
        points = [line.split()[1].replace("\\040", " ") for line in f]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def _release(root: Path) -> None:
    """Nothing of ours may outlive the build: stray processes in the chroot, mounts in it."""
    prefix = str(root.resolve())
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                target = os.readlink(proc / "root")
                if target == prefix or target.startswith(prefix + "/"):
                    os.kill(int(proc.name), signal.SIGKILL)
            except (OSError, ValueError):
                pass
    for point in sorted(_mounts_under(root), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def _debootstrap(root: Path, progress: Progress) -> None:
    """Run debootstrap, showing its phases and a package count as it goes."""
    cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
           f"--cache-dir={CACHE_DIR / 'debs'}", SUITE, str(root), MIRROR]
    (CACHE_DIR / "debs").mkdir(parents=True, exist_ok=True)
    log = CACHE_DIR / "debootstrap.log"     # the last build's, kept when it fails
    t0, phase, count, tail = time.time(), "", 0, []
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"})
        for line in proc.stdout:
            out.write(line)
            tail = (tail + [line.rstrip()])[-15:]
            words = line.split()
            if len(words) < 2 or words[0] != "I:" or words[1] == "Validating":
                continue
            if words[1] != phase:
                phase, count = words[1], 0
                progress(f"{time.time() - t0:5.0f}s debootstrap: {line[3:].strip()}")
            count += 1
            if count % 25 == 0:
                progress(f"{time.time() - t0:5.0f}s debootstrap: {phase} ... {count} ({' '.join(words[2:])})")
        rc = proc.wait()
    if rc != 0:
        raise RuntimeError(f"debootstrap failed ({rc}), log {log}:\n" + "\n".join(tail))


def _chroot(root: Path, *cmd: str) -> None:
    run_checked(["chroot", str(root), *cmd], env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})


def _install(src: str, dest: Path, mode: int = 0o644) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DEBIAN_FILES / src, dest)
    os.chmod(dest, mode)


def build(root: Path, progress: Progress = _say) -> None:
    """Fill the empty directory `root` with the golden Debian system."""
    # Before debootstrap: no documentation from dpkg, and no service may start
    # in the chroot while packages are configured (invoke-rc.d asks policy-rc.d).
    _install("dpkg-lean", root / "etc/dpkg/dpkg.cfg.d/01-si-lean")
    policy = root / "usr/sbin/policy-rc.d"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    try:
        _debootstrap(root, progress)
    finally:
        _release(root)
        policy.unlink(missing_ok=True)
    progress("configuring: hostname, GRUB defaults, systemd-networkd, the boot marker unit")
    etc = root / "etc"
    (etc / "hostname").write_text("golden\n")
    (etc / "hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\tgolden\n")
    (etc / "resolv.conf").unlink(missing_ok=True)   # debootstrap copied the build host's
    (etc / "resolv.conf").write_text("")
    (etc / "machine-id").write_text("")             # each installed clone makes its own
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    _install("grub", etc / "default/grub")
    _install("20-wired.network", etc / "systemd/network/20-wired.network")
    _install("si-booted.service", etc / "systemd/system/si-booted.service")
    _install("si-booted", root / "usr/local/sbin/si-booted", 0o755)
    _chroot(root, "systemctl", "enable", "systemd-networkd.service", "si-booted.service")
    _slim(root)


def _slim(root: Path) -> None:
    """No documentation, package lists, downloaded packages or logs in the golden tree.

    dpkg's excludes kept most documentation out, but debootstrap's first stage
    unpacks the required packages with dpkg-deb, which does not read them."""
    for sub in ("usr/share/man", "usr/share/info", "usr/share/lintian"):
        shutil.rmtree(root / sub, ignore_errors=True)
    for d in (root / "usr/share/doc").iterdir():
        for f in d.iterdir() if d.is_dir() and not d.is_symlink() else ():
            if f.name != "copyright":
                shutil.rmtree(f) if f.is_dir() and not f.is_symlink() else f.unlink()
    for d in (root / "usr/share/locale").iterdir():
        if d.is_dir():
            shutil.rmtree(d)
    for d in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for f in (root / d).glob("*"):
            if f.is_file():
                f.unlink()
    for f in (root / "var/cache/apt").glob("*.bin"):
        f.unlink()
    for f in (root / "var/log").rglob("*"):
        if f.is_file():
            f.unlink()


def _sweep_stale_builds() -> None:
    """A killed build leaves its directory (and maybe a partial tarball); its pid tells."""
    for stale in list(CACHE_DIR.glob("build-*")) + list(CACHE_DIR.glob("*.partial")):
        pid = stale.name.removeprefix("build-") if stale.name.startswith("build-") else stale.name.split(".")[-2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            if stale.is_dir():
                _release(stale / "root")
                if not _mounts_under(stale):
                    shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def ensure_tarball(progress: Progress = _say) -> tuple[Path, dict[str, float]]:
    """The cached tree's tarball, built if missing; returns it and what it cost."""
    require_tools()
    tarball = tarball_path()
    if tarball.exists():
        progress(f"using cached {tarball} ({tarball.stat().st_size / 2**20:.0f} MiB)")
        return tarball, {"debootstrap build": 0.0}
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    _sweep_stale_builds()
    work = CACHE_DIR / f"build-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    root = work / "root"
    root.mkdir(parents=True)
    progress(f"building a Debian {SUITE} tree with debootstrap from {MIRROR} (a few minutes, once)")
    t = time.time()
    try:
        build(root, progress)
        timings = {"debootstrap build": time.time() - t}
        progress(f"packing the tree into {tarball.name}")
        t = time.time()
        partial = tarball.with_name(f"{tarball.name}.{os.getpid()}.partial")
        run_checked(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-I", "zstd -T0 -3 -q",
                     "-C", str(root), "-cf", str(partial), "."])
        partial.rename(tarball)
        for old in CACHE_DIR.glob("debian-golden-*.tar.zst"):
            if old != tarball:       # an older recipe's tree
                old.unlink(missing_ok=True)
        timings["tarball pack"] = time.time() - t
    finally:
        _release(root)
        if not _mounts_under(root):
            shutil.rmtree(work, ignore_errors=True)
    progress(f"built in {timings['debootstrap build']:.0f}s, packed in {timings['tarball pack']:.0f}s: "
             f"{tarball.stat().st_size / 2**20:.0f} MiB")
    return tarball, timings


@contextmanager
def debian_golden_disk(workdir: Path, size: str = DISK_SIZE, progress: Progress = _say,
                       timings: dict[str, float] | None = None) -> Iterator[Golden]:
    """The Debian golden system on a loop-attached GPT disk, root mounted; detached after."""
    tarball, cost = ensure_tarball(progress)
    with gpt_root_disk(workdir, size) as (dev, mnt):
        t = time.time()
        run_checked(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-I", "zstd -T0 -q",
                     "-C", str(mnt), "-xpf", str(tarball)])
        write_fstab(dev, mnt)
        cost["tarball unpack"] = time.time() - t
        progress(f"golden disk ready on {dev} in {cost['tarball unpack']:.0f}s")
        if timings is not None:
            timings.update(cost)
        kernels = sorted((mnt / "boot").glob("vmlinuz-*"))
        if not kernels:
            raise RuntimeError(f"{tarball} holds no /boot/vmlinuz-*: delete it to rebuild")
        yield Golden(dev, mnt, kernels[-1].name.removeprefix("vmlinuz-"))

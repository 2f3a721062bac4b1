"""Helpers shared by the tests/test_bootimage_*.py files (not a test module)."""
from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from bootimages import debs
from bootimages.build import INITRD_FILES, BuildOptions, build

BUSYBOX = "/usr/bin/busybox"
FUNCTIONS = INITRD_FILES / "functions.sh"


def require_busybox() -> str:
    if not Path(BUSYBOX).exists():
        pytest.fail(f"{BUSYBOX} not found: install the Debian package busybox-static")
    return BUSYBOX


def run_functions(script: str, env: dict | None = None, tmp: Path | None = None) -> subprocess.CompletedProcess:
    """Run shell code after sourcing the initrd's functions.sh, under busybox sh (as in the initrd)."""
    require_busybox()
    full_env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", **(env or {})}
    if tmp is not None:
        full_env.setdefault("SI_DIR", str(tmp / "si"))
    return subprocess.run([BUSYBOX, "sh", "-c", f". {FUNCTIONS}\n{script}"], capture_output=True,
                          text=True, env=full_env, timeout=60)


@functools.lru_cache(maxsize=None)
def built_image() -> tuple:
    """Build (or reuse from the build cache) the default boot image once per test run."""
    started = time.monotonic()
    result = build(BuildOptions(output=_tmpdir("bootimage")))
    return result, time.monotonic() - started


@functools.lru_cache(maxsize=None)
def debian_modules_tree() -> Path:
    """The current Debian kernel's modules, unpacked once per run, with depmod's own modules.dep."""
    if shutil.which("depmod") is None:
        pytest.fail("depmod not found: install the Debian package kmod")
    kver = debs.current_kernel_version()
    deb = debs.DebCache(debs.default_cache_dir()).fetch(f"linux-image-{kver}")
    dest = _tmpdir("linux-image")
    _, moddir = debs.unpack_kernel(deb, dest, kver)
    subprocess.run(["depmod", "-b", str(dest), kver], check=True, capture_output=True)
    return moddir


def _tmpdir(name: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"si-test-{name}-"))
    atexit.register(shutil.rmtree, path, True)
    return path


@pytest.fixture(scope="session")
def bootimage():
    """(BuildResult, seconds the build took in this run)."""
    return built_image()


@pytest.fixture(scope="session")
def debian_modules() -> Path:
    return debian_modules_tree()

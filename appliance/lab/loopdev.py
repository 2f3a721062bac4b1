"""Disk images as loop devices with their partitions visible, always detached."""
from __future__ import annotations

import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def partition(device: str, number: int) -> str:
    return f"{device}p{number}"


@contextmanager
def loop_device(image: Path) -> Iterator[str]:
    """Attach `image`; partitions appear as <dev>p1...; detached on exit.

    `losetup -P` asks the kernel to scan, but without udev the partition nodes
    do not always show up here; `partx -a` adds whatever is still missing.
    """
    dev = subprocess.run(["losetup", "-fP", "--show", str(image)], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        rescan(dev)
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], capture_output=True)


def rescan(dev: str) -> None:
    """Make the kernel's partition table for dev match the disk (after sfdisk, say)."""
    subprocess.run(["partx", "-u", dev], capture_output=True)
    subprocess.run(["partx", "-a", dev], capture_output=True)
    deadline = time.time() + 5
    name = Path(dev).name
    wanted = [p.name for p in Path(f"/sys/block/{name}").glob(f"{name}p*")]
    while time.time() < deadline and not all(Path("/dev", p).exists() for p in wanted):
        time.sleep(0.05)

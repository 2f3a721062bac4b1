"""Golden-client images for the autoinstall tests, with real `sfdisk --dump` output."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from appliance.lab.script_stubs import write_stubs  # noqa: F401  (the tests' import)

MIB = 1024 * 1024


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    assert not missing, f"tools missing for this test: {', '.join(missing)} (apt-get install fdisk xfsprogs ...)"


def sfdisk_dump(tmp: Path, name: str, size_mib: int, script: str, golden_device: str) -> str:
    """Partition a disk image file with sfdisk, dump it, and name it like the golden disk."""
    need("sfdisk")
    img = tmp / f"{name}.img"
    img.unlink(missing_ok=True)
    with open(img, "wb") as f:
        f.truncate(size_mib * MIB)
    subprocess.run(["sfdisk", "-q", str(img)], input=script, text=True, check=True, capture_output=True)
    dump = subprocess.run(["sfdisk", "--dump", str(img)], text=True, check=True, capture_output=True).stdout
    img.unlink()
    sep = "p" if golden_device[-1].isdigit() else ""
    out = []
    for line in dump.splitlines():
        if line.startswith(str(img)):
            line = golden_device + sep + line[len(str(img)):]
        elif line.startswith("device:"):
            line = f"device: {golden_device}"
        out.append(line)
    return "\n".join(out) + "\n"


def make_image(root: Path, *, schemes: dict[str, str], fstab: str, disks_json: dict | None = None,
               mounted: str = "", hostname: str = "golden", interfaces: str | None = None,
               networkd: bool = False, files: dict[str, str] | None = None) -> Path:
    """A golden client's tree as getimage leaves it."""
    sch = root / "etc/systemimager/partitionschemes"
    sch.mkdir(parents=True, exist_ok=True)
    for disk, text in schemes.items():
        (sch / (disk.replace("/", "_") + ".sfdisk")).write_text(text)
    if disks_json is not None:
        (sch / "disks.json").write_text(json.dumps(disks_json))
    (root / "etc/systemimager/mounted_filesystems").write_text(mounted)
    (root / "etc/fstab").write_text(fstab)
    (root / "etc/hostname").write_text(hostname + "\n")
    (root / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}.example\t{hostname}\n"
                                    "::1\tlocalhost ip6-localhost\n")
    if interfaces is not None:
        (root / "etc/network").mkdir(parents=True, exist_ok=True)
        (root / "etc/network/interfaces").write_text(interfaces)
    if networkd:
        (root / "etc/systemd/network").mkdir(parents=True, exist_ok=True)
        (root / "etc/systemd/network/50-dhcp.network").write_text("[Match]\nName=en*\n\n[Network]\nDHCP=yes\n")
    for rel, text in (files or {}).items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


DEBIAN_INTERFACES = ("source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n\n"
                     "allow-hotplug ens3\niface ens3 inet dhcp\n")

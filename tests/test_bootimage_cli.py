"""si mkbootimage from the command line: output place, custom kernel, extra modules, errors."""
from __future__ import annotations

import gzip
import json

import pytest

from appliance.cli import main
from bootimages.cpio import read
from support.bootimage_support import bootimage, debian_modules  # noqa: F401  (session fixtures)


def _initrd_entries(path):
    return {e.name: e for e in read(gzip.decompress(path.read_bytes()))}


def test_output_goes_to_boot_root_from_config(tmp_path, bootimage, capsys):  # noqa: F811
    cfg = tmp_path / "appliance.toml"
    cfg.write_text(f'interface = "lo"\naddress = "10.9.0.1"\nstate_dir = "{tmp_path / "state"}"\n'
                   '[[subnet]]\nnetwork = "10.9.0.0/24"\n')
    assert main(["mkbootimage", "--config", str(cfg), "--json"]) == 0   # identical inputs: cached build
    result = json.loads(capsys.readouterr().out)
    out = tmp_path / "state" / "tftpboot" / "systemimager"
    assert result["initrd"] == str(out / "initrd.img") and result["cached"] is True
    assert (out / "kernel").read_bytes() == bootimage[0].kernel.read_bytes()
    assert (out / "initrd.img").stat().st_size == result["initrd_size"]


def test_initrd_contents(bootimage):  # noqa: F811
    result, _ = bootimage
    entries = _initrd_entries(result.initrd)
    for path in ("init", "usr/bin/busybox", "usr/bin/rsync", "usr/sbin/sfdisk", "usr/sbin/mkfs.ext4",
                 "usr/sbin/mkfs.vfat", "usr/sbin/blkid", "usr/lib/x86_64-linux-gnu/libc.so.6",
                 "usr/lib/systemimager/functions.sh", "usr/bin/si-autoinstall", "dev/console"):
        assert path in entries, path
    for applet in ("usr/bin/sh", "usr/sbin/udhcpc", "usr/bin/wget", "usr/sbin/mkswap", "usr/bin/mount",
                   "usr/sbin/chroot", "usr/sbin/partprobe"):
        assert entries[applet].is_symlink and entries[applet].data == b"/usr/bin/busybox", applet
    for cmd in ("si-progress", "si-log", "si-fail", "si-done"):
        assert entries[f"usr/bin/{cmd}"].data == b"si-command"
    assert entries["lib64"].data == b"usr/lib64"
    load = entries["etc/systemimager/modules.load"].data.decode().split()
    assert any(m.endswith("/virtio_net.ko") for m in load) and any(m.endswith("/ext4.ko") for m in load)
    assert all(f"usr/lib/modules/{result.kernel_version}/{m}" in entries for m in load)
    assert result.initrd_size < 16 * 2**20, "the initrd grew past 16 MiB; keep it lean"


def test_custom_kernel_and_extra_modules(tmp_path, debian_modules, capsys):  # noqa: F811
    kernel = debian_modules.parents[2] / "boot" / f"vmlinuz-{debian_modules.name}"
    out = tmp_path / "out"
    assert main(["mkbootimage", "--output", str(out), "--kernel", str(kernel), "--modules-dir",
                 str(debian_modules), "--extra-modules", "floppy,xfs", "--no-cache", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kernel_version"] == debian_modules.name and result["cached"] is False
    assert (out / "kernel").read_bytes() == kernel.read_bytes()
    load = _initrd_entries(out / "initrd.img")["etc/systemimager/modules.load"].data.decode().split()
    names = [m.rsplit("/", 1)[-1] for m in load]
    assert "floppy.ko" in names and names.index("libcrc32c.ko") < names.index("xfs.ko")


@pytest.mark.parametrize("argv, message", [
    (["--output", "X", "--kernel", "/nonexistent"], "needs both --kernel FILE and --modules-dir"),
    (["--output", "X", "--kernel", "/nonexistent", "--modules-dir", "/tmp"], "no such file"),
    (["--output", "X", "--with", "nosuch"], "unknown tool set"),
    (["--config", "/nonexistent/appliance.toml"], "does not exist"),
])
def test_errors_are_one_line(tmp_path, argv, message, capsys):
    argv = [str(tmp_path / "o") if a == "X" else a for a in argv]
    assert main(["mkbootimage", *argv]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]   # after any progress lines
    assert last.startswith("si mkbootimage: ") and message in last and "Traceback" not in err


def test_unknown_extra_module_is_an_error(tmp_path, debian_modules, capsys):  # noqa: F811
    kernel = debian_modules.parents[2] / "boot" / f"vmlinuz-{debian_modules.name}"
    assert main(["mkbootimage", "--output", str(tmp_path), "--kernel", str(kernel), "--modules-dir",
                 str(debian_modules), "--extra-modules", "e1000,no_such_module", "--no-cache"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == "si mkbootimage: module 'no_such_module' is neither a module nor built into this kernel"
    assert not (tmp_path / "initrd.img").exists()

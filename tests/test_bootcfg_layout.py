"""si mkbootserver: the boot root laid out from Debian's packages, idempotently."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.bootconfig import BOOT_FILES, BootLayoutError, lay_out, prepare_boot_root
from services import bootloaders
from appliance.config import load

REPO = Path(__file__).resolve().parent.parent
DEFAULT_NEEDED = bootloaders.needed("ipxe", "shim")      # the config's defaults: iPXE for BIOS, shim for UEFI
SI = [sys.executable, "-m", "appliance.cli"]


def fake_source(root: Path, skip: tuple[str, ...] = ()) -> Path:
    for f in BOOT_FILES:
        if f.dest in skip:
            continue
        path = root / f.source
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"fake {f.dest}\n".encode())
    return root


def test_layout_copies_then_is_idempotent(tmp_path):
    src, boot = fake_source(tmp_path / "src"), tmp_path / "boot"
    first = lay_out(boot, src, needed=DEFAULT_NEEDED)
    assert sorted(first.copied) == sorted(f.dest for f in BOOT_FILES) and not first.unchanged
    assert (boot / "efi64/syslinux.efi").read_bytes() == b"fake efi64/syslinux.efi\n"
    assert (boot / "efi64/ldlinux.e64").is_file() and (boot / "grubx64.efi").is_file()
    stamp = (boot / "pxelinux.0").stat().st_mtime_ns
    second = lay_out(boot, src, needed=DEFAULT_NEEDED)
    assert not second.copied and len(second.unchanged) == len(BOOT_FILES)
    assert (boot / "pxelinux.0").stat().st_mtime_ns == stamp          # not rewritten
    (src / "usr/lib/ipxe/undionly.kpxe").write_bytes(b"newer undionly\n")
    third = lay_out(boot, src, needed=DEFAULT_NEEDED)
    assert third.copied == ["undionly.kpxe"]
    assert (boot / "undionly.kpxe").read_bytes() == b"newer undionly\n"
    assert not [p for p in boot.rglob(".*tmp*")]                      # no temporaries left


def test_missing_package_is_a_clear_error_and_nothing_is_copied(tmp_path):
    src, boot = fake_source(tmp_path / "src", skip=("pxelinux.0", "efi64/syslinux.efi")), tmp_path / "boot"
    with pytest.raises(BootLayoutError) as err:
        lay_out(boot, src, needed=bootloaders.needed("pxelinux", "syslinux"))
    message = str(err.value)
    assert "pxelinux.0" in message and "syslinux.efi" in message
    assert "apt-get install pxelinux syslinux-efi" in message
    assert not boot.exists() or not any(boot.iterdir())


def test_optional_grub_and_autoinstall_pair_are_reported(tmp_path):
    """With iPXE on UEFI, GRUB is optional: its absence is a note naming its package."""
    ipxe_only = bootloaders.needed("ipxe", "ipxe")
    src, boot = fake_source(tmp_path / "src", skip=("grubx64.efi",)), tmp_path / "boot"
    report = lay_out(boot, src, needed=ipxe_only)
    notes = "\n".join(report.notes())
    assert "grub-efi-amd64-signed" in notes and "si mkbootimage" in notes
    (boot / "systemimager").mkdir()
    (boot / "systemimager/kernel").write_bytes(b"k")
    (boot / "systemimager/initrd.img").write_bytes(b"i")
    report = lay_out(boot, src, needed=ipxe_only)
    assert report.kernel == boot / "systemimager/kernel" and report.initrd == boot / "systemimager/initrd.img"
    assert "si mkbootimage" not in "\n".join(report.notes())


def test_non_strict_layout_for_si_up_copies_what_exists(tmp_path):
    src, boot = fake_source(tmp_path / "src", skip=("pxelinux.0",)), tmp_path / "boot"
    report = lay_out(boot, src, strict=False, needed=bootloaders.needed("pxelinux", "syslinux"))
    assert [f.dest for f in report.missing] == ["pxelinux.0"] and "ldlinux.c32" in report.copied
    assert "apt-get install pxelinux" in report.notes()[0]


def test_only_the_configured_loaders_are_required(tmp_path):
    """iPXE for BIOS and UEFI: pxelinux absent is a note, not an error; with shim chosen, shim is needed."""
    src, boot = fake_source(tmp_path / "src", skip=("pxelinux.0", "shimx64.efi")), tmp_path / "boot"
    report = lay_out(boot, src, needed=bootloaders.needed("ipxe", "ipxe"))
    assert not report.missing and {f.dest for f in report.skipped} == {"pxelinux.0", "shimx64.efi"}
    assert "ldlinux.c32" in report.copied and "snponly.efi" in report.copied
    assert not [n for n in report.notes(optional=False) if "skipped" in n]
    with pytest.raises(BootLayoutError, match="apt-get install shim-signed"):
        lay_out(boot, src, needed=bootloaders.needed("ipxe", "shim"))


def test_table_matches_debian_packages_installed_here(tmp_path):
    """The real thing: every source exists on this Debian machine and belongs to the named package."""
    boot = tmp_path / "boot"
    report = lay_out(boot, needed=DEFAULT_NEEDED)
    assert len(report.copied) == len(BOOT_FILES)
    out = subprocess.run(["dpkg", "-S", *(f"/{f.source}" for f in BOOT_FILES)],
                         capture_output=True, text=True, check=True).stdout
    owners = {line.split(": ", 1)[1]: line.split(": ", 1)[0] for line in out.splitlines()}
    for f in BOOT_FILES:
        packages = [p.split(":")[0] for p in owners[f"/{f.source}"].split(", ")]   # shim-signed:amd64
        assert f.package in packages, (f.source, owners[f"/{f.source}"])
    assert (boot / "pxelinux.0").read_bytes() == Path("/usr/lib/PXELINUX/pxelinux.0").read_bytes()


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "appliance.toml"
    path.write_text(f'interface = "br-test"\naddress = "10.77.0.1"\nstate_dir = "{tmp_path}/state"\n'
                    f'log_dir = "{tmp_path}/log"\n[[subnet]]\nnetwork = "10.77.0.0/24"\n')
    return path


def test_cli_mkbootserver(tmp_path):
    config = _config(tmp_path)
    src = fake_source(tmp_path / "src")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = lambda *extra: subprocess.run([*SI, "mkbootserver", "--config", str(config), *extra],
                                        capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    ok = run("--source-root", str(src))
    assert ok.returncode == 0, ok.stderr
    assert f"{len(BOOT_FILES)} file(s) copied" in ok.stdout and "si mkbootimage" in ok.stdout
    again = run("--source-root", str(src))
    assert "0 file(s) copied" in again.stdout
    boot = load(config).boot_root
    (src / "usr/lib/shim/shimx64.efi.signed").unlink()      # the default UEFI loader's
    bad = run("--source-root", str(src))
    assert bad.returncode == 1                 # the operation failed (a package is missing)
    assert bad.stderr.count("\n") == 1 and "apt-get install shim-signed" in bad.stderr
    assert (boot / "shimx64.efi").is_file()     # the earlier layout is untouched


def test_prepare_boot_root_never_raises(tmp_path, caplog):
    cfg = load(_config(tmp_path))
    report = prepare_boot_root(cfg)      # real Debian files on this machine
    assert (cfg.boot_root / "pxelinux.0").is_file() and not report.missing
    assert any("si mkbootimage" in r.message for r in caplog.records)


def test_si_up_context_serves_rendered_configs(tmp_path):
    from appliance.commands.up import make_context
    from appliance.store.records import Host
    ctx = make_context(load(_config(tmp_path)))
    ctx.store.upsert_host(Host("www1", mac="52:54:00:aa:bb:01", image="web"))
    script = ctx.dynamic_file("ipxe/01-52-54-00-aa-bb-01.ipxe", "10.77.0.50")
    assert b"HOSTNAME=www1" in script and b"kernel http://10.77.0.1:8080/boot/systemimager/kernel" in script
    assert ctx.dynamic_file("pxelinux.0", "10.77.0.50") is None     # static files are not ours
    ctx.store.close()


def test_localboot_efi_is_built_from_debian_grub_and_kept_when_unchanged(tmp_path):
    """The real grub-mkimage with grub-efi-amd64-bin's modules: a PE image with our config inside."""
    boot = tmp_path / "boot"
    first = lay_out(boot, needed=DEFAULT_NEEDED)
    assert first.localboot == "built", first.localboot
    image = (boot / "localboot.efi").read_bytes()
    assert image[:2] == b"MZ" and b"chainloader /EFI/BOOT/BOOTX64.EFI" in image
    stamp = (boot / "localboot.efi").stat().st_mtime_ns
    assert lay_out(boot, needed=DEFAULT_NEEDED).localboot == "unchanged"
    assert (boot / "localboot.efi").stat().st_mtime_ns == stamp
    assert not [p for p in boot.iterdir() if p.name.startswith(".localboot")]


def test_localboot_without_grub_modules_is_a_note_naming_the_package(tmp_path):
    src, boot = fake_source(tmp_path / "src"), tmp_path / "boot"
    report = lay_out(boot, src, needed=DEFAULT_NEEDED)          # the fake root has no GRUB modules
    assert not (boot / "localboot.efi").exists()
    assert any("apt-get install grub-efi-amd64-bin" in n for n in report.notes()), report.notes()

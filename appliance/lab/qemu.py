"""QEMU machines on a lab bridge, with their serial console captured.

Guests run under TCG by default: on this project's machines KVM guests hang
(see LAB.md). SI_QEMU_ACCEL=kvm opts into KVM where it works.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.debian_packages import package_file, program_path

from .netns import Lab



# Firmware comes from Debian's packages, found with dpkg -L: releases move and
# drop files (Debian 13's ovmf ships only the 4 MiB pair).
def ovmf_code() -> Path:
    return package_file("ovmf", "OVMF_CODE_4M.fd")


def ovmf_vars() -> Path:
    return package_file("ovmf", "OVMF_VARS_4M.fd")


# Secure Boot as shipped servers have it: Microsoft's keys enrolled (the .ms
# variables), which is what Debian's shim is signed for.
def ovmf_secure_code() -> Path:
    return package_file("ovmf", "OVMF_CODE_4M.secboot.fd")


def ovmf_secure_vars() -> Path:
    return package_file("ovmf", "OVMF_VARS_4M.ms.fd")


# Debian 13's OVMF (edk2 2025.02) offers no network boot option to a guest without a
# random number generator (its NEWS.Debian; PixieFail hardening); 12's does not care.
UEFI_NETBOOT_RNG = ("-device", "virtio-rng-pci")


def efi_virtio_rom() -> Path:
    """iPXE's virtio-net option ROM with its EFI driver (OVMF's own has no PXE base code here)."""
    return package_file("ipxe-qemu", "efi-virtio.rom")


def ipxe_lkrn() -> Path:
    """iPXE as a Linux-kernel-format image: a stand-in kernel for boot-path tests."""
    return package_file("ipxe", "ipxe.lkrn")


class GuestTimeout(AssertionError):
    """The console did not show what we waited for; carries the console's tail."""


def accel() -> str:
    return os.environ.get("SI_QEMU_ACCEL", "tcg")


def require_qemu(firmware: str) -> None:
    program_path("qemu-system-x86_64")
    if firmware == "uefi":
        ovmf_code(), ovmf_vars()
    if firmware == "uefi-secure":
        ovmf_secure_code(), ovmf_secure_vars()


def make_disk(path: Path, size: str) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(path), size], check=True)
    return path


@dataclass
class Guest:
    lab: Lab
    ns: str
    name: str
    bridge: str
    mac: str
    workdir: Path
    firmware: str = "bios"             # "bios" (SeaBIOS + iPXE ROM), "uefi" (OVMF) or "uefi-secure"
    disk: Path | None = None
    cdrom: Path | None = None
    memory_mb: int = 1024
    boot: tuple[str, ...] = ("net", "disk")   # firmware boot order; netboot-once does the rest
    nic_model: str = "virtio-net-pci"  # or "e1000", ...
    other_nics: tuple[tuple[str, str], ...] = ()   # (bridge, MAC) of NICs ahead of the install one
    netboot: str = "pxe"               # UEFI: "pxe", or "http" (the firmware's HTTP boot only)
    extra: list[str] = field(default_factory=list)
    other_taps: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    tap: str | None = None

    @property
    def console_path(self) -> Path:
        return self.workdir / f"{self.name}.console.log"

    def command(self, tap: str) -> list[str]:
        cmd = ["qemu-system-x86_64", "-accel", accel(), "-m", str(self.memory_mb), "-smp", "1",
               "-display", "none", "-monitor", "none", "-serial", f"file:{self.console_path}",
               "-name", self.name]
        nic = f"{self.nic_model},netdev=n0,mac={self.mac}"
        if self.firmware == "uefi":
            cmd += ["-machine", "q35", *self._pflash(ovmf_code(), ovmf_vars()), *UEFI_NETBOOT_RNG]
        elif self.firmware == "uefi-secure":
            # SMM keeps the variable store out of the guest's reach, as Secure Boot needs.
            cmd += ["-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on",
                    *self._pflash(ovmf_secure_code(), ovmf_secure_vars()), *UEFI_NETBOOT_RNG]
        if self.firmware.startswith("uefi") and self.nic_model == "virtio-net-pci":
            # No option ROM on the NIC: QEMU's default (iPXE) would boot by itself and be
            # handed its script, so the firmware's own PXE, and the loader DHCP names for
            # UEFI, would never run. Servers' UEFI PXE is the firmware's, as OVMF's is here.
            # (OVMF has no driver for other NICs: those keep iPXE's ROM as their driver.)
            nic += ",romfile="
        if self.netboot == "http":
            # OVMF's knobs (fw_cfg): no PXE boot options, so its HTTP boot option runs.
            cmd += ["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=no",
                    "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no"]
        def index(device: str) -> str:
            return f",bootindex={self.boot.index(device) + 1}" if device in self.boot else ""

        if self.cdrom:
            cmd += ["-drive", f"file={self.cdrom},media=cdrom,if=none,id=cd0,readonly=on",
                    "-device", f"ide-cd,drive=cd0{index('cdrom')}"]
        for i, (tap_i, (_, mac)) in enumerate(zip(self.other_taps, self.other_nics), start=1):
            cmd += ["-netdev", f"tap,id=o{i},ifname={tap_i},script=no,downscript=no",
                    "-device", f"{self.nic_model},netdev=o{i},mac={mac},romfile="]
        cmd += ["-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no", "-device", nic + index("net")]
        if self.disk:
            cmd += ["-drive", f"file={self.disk},format=raw,if=none,id=d0",
                    "-device", f"virtio-blk-pci,drive=d0{index('disk')}"]
        return cmd + self.extra

    def _pflash(self, code: Path, vars_template: Path) -> list[str]:
        """The firmware's code, read-only, and this machine's own copy of its variables."""
        vars_copy = self.workdir / f"{self.name}.{vars_template.name}"
        if not vars_copy.exists():
            shutil.copy(vars_template, vars_copy)
        return ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
                "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]

    def start(self) -> "Guest":
        require_qemu(self.firmware)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.tap is None:  # a second power-on reuses the machine's cables
            self.tap = self.lab.tap(self.ns, f"tap-{self.name}"[:15], self.bridge)
            self.other_taps = [self.lab.tap(self.ns, f"t{i}-{self.name}"[:15], bridge)
                               for i, (bridge, _) in enumerate(self.other_nics, start=1)]
        self.console_path.write_bytes(b"")  # each power-on gets a fresh console log
        log = open(self.workdir / f"{self.name}.qemu.log", "a")
        self.proc = self.lab.popen(self.ns, *self.command(self.tap), stdout=log, stderr=subprocess.STDOUT)
        return self

    def console(self) -> str:
        try:
            return self.console_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_for(self, pattern: str, timeout: float, since: int = 0) -> re.Match:
        """Wait until the console (from offset `since`) matches; raise with its tail if not."""
        regex = re.compile(pattern)
        deadline = time.time() + timeout
        while True:
            text = self.console()
            match = regex.search(text, since)
            if match:
                return match
            if self.proc and self.proc.poll() is not None:
                raise GuestTimeout(f"{self.name}: QEMU exited ({self.proc.returncode}) before "
                                   f"/{pattern}/; console tail:\n{text[-3000:]}")
            if time.time() > deadline:
                raise GuestTimeout(f"{self.name}: no /{pattern}/ within {timeout:.0f}s; "
                                   f"console tail:\n{text[-3000:]}")
            time.sleep(0.25)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

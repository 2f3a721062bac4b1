#!/usr/bin/env python3
"""Seconds per phase of a real PXE install under QEMU (TCG): BIOS, UEFI, UEFI with Secure Boot.

Builds the lab (appliance, golden client, image), then installs a BIOS machine,
a UEFI one and a UEFI one with Secure Boot on (Microsoft's keys) one after the
other (UEFI through the default loader, Debian's signed shim and GRUB), watching the appliance's API and the
machine's console every half second. Phases, from power-on:
  firmware_to_dhcp      power-on until the appliance has leased it an address
  loader                until iPXE or GRUB runs the host's config (console: "SystemImager: autoinstalling");
                        SeaBIOS guests' serial console does not show iPXE, so for BIOS
                        this runs on to the kernel's start
  kernel_initrd         until the kernel, fetched with its initrd, starts ("Linux version")
  initrd_to_script      until the installer runs the host's script ("running <host>.sh")
  script_start          until the script's first progress report
  partition, mkfs, mount, rsync (image transfer), configure, bootloader
                        from the installer's progress reports
  reboot_to_login       install done until the installed system says it booted
Prints JSON as its last line.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.lab.install_lab import InstallLab  # noqa: E402
from appliance.lab.netns import Lab  # noqa: E402

PHASES = ("partition", "mkfs", "mount", "rsync", "configure", "bootloader", "done")
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CONSOLE_MARKS = (("script", "SystemImager: autoinstalling {host}"), ("kernel", "Linux version"),
                 ("running", "SystemImager: running {host}.sh"))


def install_one(ilab: InstallLab, hostname: str, mac: str, firmware: str) -> dict:
    machine = ilab.machine(hostname, mac, firmware=firmware)
    seen: dict[str, float] = {}
    t0 = time.time()
    machine.guest.start()
    try:
        while time.time() - t0 < 1200:
            now = time.time() - t0
            if "dhcp" not in seen and any(l["mac"] == mac for l in ilab.api("/api/leases") or []):
                seen["dhcp"] = now
            console = ESCAPES.sub("", machine.guest.console())   # SeaBIOS mirrors the screen with cursor moves
            for mark, text in CONSOLE_MARKS:
                if mark not in seen and text.format(host=hostname) in console:
                    seen[mark] = now
            run = ilab.install_state(hostname)
            if run:
                seen.setdefault("installer", now)
                if run["phase"] in PHASES:
                    seen.setdefault(run["phase"], now)
                if run["state"] == "failed":
                    raise RuntimeError(f"{hostname} failed: {run['last_line']}")
                if run["state"] == "succeeded":
                    seen.setdefault("done", now)
                    bytes_moved = run["bytes"]
                    break
            time.sleep(0.5)
        machine.guest.wait_for(r"SI-GOLDEN-BOOTED", 300)
        seen["login"] = time.time() - t0
    finally:
        machine.guest.stop()
    # Each interval is named after the mark that starts it.
    marks = [("firmware_to_dhcp", 0.0), ("loader", seen["dhcp"])]
    marks += [(name, seen[mark]) for name, mark in (("kernel_initrd", "script"), ("initrd_to_script", "kernel"),
                                                    ("script_start", "running")) if mark in seen]
    marks += [("installer_start", seen["installer"])] if "running" not in seen else []
    marks += [(p, seen[p]) for p in PHASES if p in seen and p != "done"]
    marks += [("reboot_to_login", seen["done"]), ("end", seen["login"])]
    phases = {name: round(end - start, 1) for (name, start), (_, end) in zip(marks, marks[1:])}
    return {"phases": phases, "total": round(seen["login"], 1), "bytes": bytes_moved}


def main() -> int:
    argparse.ArgumentParser(description=__doc__).parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="si-bench-e2e-"))
    result: dict = {}
    with Lab() as lab:
        ilab = InstallLab(lab, workdir)
        try:
            t = time.time()
            ilab.up()
            ilab.capture("bench_v1")
            ilab.addclients("bench_v1", "node", 3)
            result["setup_seconds"] = round(time.time() - t, 1)
            result["bios"] = install_one(ilab, "node1", "52:54:00:77:00:11", "bios")
            result["uefi"] = install_one(ilab, "node2", "52:54:00:77:00:12", "uefi")
            result["uefi_secure_boot"] = install_one(ilab, "node3", "52:54:00:77:00:13", "uefi-secure")
        finally:
            ilab.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

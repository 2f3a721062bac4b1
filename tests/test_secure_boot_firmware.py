"""Secure Boot firmware against the appliance's loaders, before any install.

OVMF's Secure Boot build with Microsoft's keys enrolled (as shipped servers
have it) PXE-boots from `si up`. With dhcp.uefi_loader = "shim" it runs
Debian's signed shim, which loads Debian's signed network GRUB, which reads
the per-MAC config the appliance renders. With "ipxe" it is offered iPXE's
snponly.efi, which is not signed: the firmware must refuse it, which is what
shows that Secure Boot is really enforced here (vm-tests/test_secure_boot.py
then installs through the signed chain).
"""
from __future__ import annotations

import pytest

from appliance.lab.appliance_ns import start_appliance
from appliance.lab.netns import Lab
from appliance.lab.qemu import Guest, ovmf_secure_code
from support.needs import require_programs, require_root

MAC = "52:54:00:5b:00:01"
TIMEOUT = 180        # OVMF's Secure Boot build under TCG reaches PXE in about 30 s


@pytest.mark.parametrize("uefi_loader", ["shim", "ipxe"])
def test_secure_boot_firmware_starts_only_the_signed_chain(tmp_path, uefi_loader):
    require_root()
    require_programs("qemu-system-x86_64")
    ovmf_secure_code()
    with Lab() as lab:
        app = start_appliance(lab, tmp_path, services=("dhcp", "tftp", "http"), uefi_loader=uefi_loader,
                              probe_seconds=0)
        app.si("mkbootserver")
        app.start()
        guest = Guest(lab, app.ns, "sb", "br0", MAC, tmp_path, firmware="uefi-secure", boot=("net",))
        try:
            guest.start()
            if uefi_loader == "shim":
                guest.wait_for(r"SystemImager: unknown machine: boot the local disk", TIMEOUT)
            else:
                guest.wait_for(r'failed to load Boot\d+ "UEFI PXEv4[^\n]*: Access Denied', TIMEOUT)
        finally:
            guest.stop()
            app.stop()
        console = guest.console()
    if uefi_loader == "shim":
        # shim ran (it fetched GRUB), and GRUB ran the config rendered for this unknown MAC
        # (its echo, then GRUB's own error for the missing disk loader).
        assert "NBP filename is shimx64.efi" in console and "Fetching Netboot Image grubx64.efi" in console
        assert "error: no such device: /EFI/BOOT/BOOTX64.EFI" in console and "iPXE" not in console
    else:
        assert "NBP filename is snponly.efi" in console and "NBP file downloaded successfully" in console
        assert "iPXE" not in console, "iPXE ran on a Secure Boot machine"

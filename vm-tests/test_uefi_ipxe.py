"""UEFI through iPXE (dhcp.uefi_loader = "ipxe"), the choice for sites with Secure Boot off.

snponly.efi fetches its per-MAC script, kernel and initrd over HTTP; after the
install its script hands over to localboot.efi, which starts the disk's own
loader.
"""
from __future__ import annotations

INSTALL_TIMEOUT = 900
BOOT_TIMEOUT = 300
BOOTED = r"SI-GOLDEN-BOOTED hostname=(\S+) ip=(\S+) root=(\S+) firmware=(\S+) secureboot=(\S+)"


def test_uefi_install_through_ipxe_then_localboot(ipxe_uefi_lab):
    lab = ipxe_uefi_lab
    lab.addclients("golden_v1", "ue", 1)
    node = lab.machine("ue1", "52:54:00:77:06:11", firmware="uefi", disk_size="1G")
    try:
        node.guest.start()
        lab.wait_installed("ue1", INSTALL_TIMEOUT)
        booted = node.guest.wait_for(BOOTED, BOOT_TIMEOUT)
        console = node.guest.console()
    finally:
        node.guest.stop()
    assert booted.groups()[0:2] == ("ue1", "10.77.0.11/24") and booted.group(4) == "uefi"
    assert "NBP filename is snponly.efi" in console and "iPXE" in console
    # iPXE hands over to localboot.efi, which starts the disk's loader: the firmware's
    # other network boot options (PXEv6, HTTP boot) are never tried.
    after = console.split("ue1 is installed: boot the local disk", 1)[1]
    assert "starting the boot loader on the local disk" in after, after[-2000:]
    assert "Start PXE over IPv6" not in after and "HTTP Boot" not in after, after[-2000:]

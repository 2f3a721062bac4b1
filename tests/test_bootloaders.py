"""The one table of boot loaders: what it answers, and that the README shows it as it is."""
from __future__ import annotations

from pathlib import Path

from services import bootloaders

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_shows_the_table_as_it_is():
    assert bootloaders.markdown_table() in README.read_text(), \
        "README's boot loader table differs from services/bootloaders.py: paste markdown_table()'s output"


def test_firmware_of_client_architectures():
    assert [bootloaders.firmware_of(a) for a in (None, 0, 7, 9, 16, 11, 19, 0x1234)] == \
        ["bios", "bios", "uefi-x64", "uefi-x64", "uefi-x64-http", None, None, None]


def test_every_choice_has_its_files_and_http_boot_one_loader():
    for row in bootloaders.LOADERS:
        assert row.file in {f.dest for f in row.files}, row
    assert bootloaders.loader("shim", "uefi-x64").files[-1].dest == "grubx64.efi"   # shim loads it from beside itself
    assert bootloaders.loader("shim", "uefi-x64-http") == bootloaders.loader("ipxe", "uefi-x64-http")
    assert bootloaders.loader("pxelinux", "uefi-x64") is None


def test_needed_is_the_chosen_loaders_files():
    assert bootloaders.needed("ipxe", "shim") == {"undionly.kpxe", "shimx64.efi", "grubx64.efi", "ipxe.efi"}
    assert "pxelinux.0" in bootloaders.needed("pxelinux", "syslinux")
    assert len({f.dest for f in bootloaders.all_files()}) == len(bootloaders.all_files())


def test_every_flavour_has_a_config_template():
    from appliance.bootconfig.render import FLAVOURS
    assert {row.flavour for row in bootloaders.LOADERS} <= set(FLAVOURS)

"""Boot decisions and rendered pxelinux/iPXE/GRUB configs, through the provider and over HTTP."""
from __future__ import annotations

import time
import urllib.error
import urllib.request
from ipaddress import IPv4Address, IPv4Network

import pytest

from appliance import bootconfig
from appliance.bootconfig import decide, render
from appliance.bootconfig.provider import boot_file, hex_ip
from appliance.config import Config, HttpConfig, SubnetConfig
from appliance.http import HttpService
from appliance.service import Context
from appliance.store import Store
from appliance.store.records import Host, Lease

from support.dns_harness import ServiceThread, free_port

CFG = Config(interface="br0", address=IPv4Address("10.77.0.1"), image_server=IPv4Address("10.77.0.5"),
             subnets=(SubnetConfig(IPv4Network("10.77.0.0/24")),), http=HttpConfig(port=8080))
MAC = "52:54:00:aa:bb:01"
INSTALL = Host("www1", mac=MAC, ip="10.77.0.11", image="web")
CMDLINE = "IMAGESERVER=10.77.0.5 SI_HTTP_PORT=8080 HOSTNAME=www1"


def text(flavour, host):
    return render(flavour, decide(host, CFG), CFG).decode()


def test_installing_host():
    entry = decide(INSTALL, CFG)
    assert entry.action == "install" and entry.cmdline == CMDLINE
    pxe = text("pxelinux", INSTALL)
    assert "DEFAULT systemimager" in pxe
    assert "KERNEL ::systemimager/kernel" in pxe and "INITRD ::systemimager/initrd.img" in pxe
    assert f"APPEND {CMDLINE}\n  # BOOTIF" in pxe and "IPAPPEND 2\n" in pxe and "SERIAL" not in pxe
    ipxe = text("ipxe", INSTALL)
    assert ipxe.startswith("#!ipxe\n")
    assert (f"kernel http://10.77.0.1:8080/boot/systemimager/kernel initrd=initrd.img {CMDLINE} BOOTIF=01-${{netX/mac:hexhyp}} || goto failed"
            in ipxe)
    assert "initrd --name initrd.img http://10.77.0.1:8080/boot/systemimager/initrd.img" in ipxe
    assert "\nboot " in ipxe
    grub = text("grub", INSTALL)
    assert f"linux /systemimager/kernel {CMDLINE} BOOTIF=01-${{net_default_mac}}\n" in grub and "initrd /systemimager/initrd.img" in grub
    assert "serial" not in grub


@pytest.mark.parametrize("host, why", [
    (None, "unknown machine"),
    (Host("www2", mac=MAC, image="web", netboot="local"), "www2 is installed"),
    (Host("www3", mac=MAC, image=None), "no (valid) image"),
    (Host("www4", mac=MAC, image="../etc"), "no (valid) image"),
    (Host("bad\nname", mac=MAC, image="web"), "host name not usable"),
    (Host("x y", mac=MAC, image="web"), "host name not usable"),
])
def test_local_boot_cases(host, why):
    entry = decide(host, CFG)
    assert entry.action == "local" and why in entry.reason
    pxe = text("pxelinux", host)
    assert "DEFAULT local" in pxe and "LOCALBOOT 0" in pxe and "KERNEL" not in pxe
    ipxe = text("ipxe", host)
    assert ipxe.rstrip().endswith("exit 1") and "\nkernel " not in ipxe
    assert "\niseq ${platform} efi && chain --autofree http://10." in ipxe and "/boot/localboot.efi ||\n" in ipxe
    grub = text("grub", host)
    assert "\nexit\n" in grub and "linux" not in grub
    assert "search --no-floppy --file --set=root /EFI/BOOT/BOOTX64.EFI" in grub and "chainloader" in grub
    for rendered in (pxe, ipxe, grub):
        assert "bad\nname" not in rendered


@pytest.mark.parametrize("console, unit, speed", [
    ("ttyS0,115200n8", 0, 115200), ("ttyS1,57600", 1, 57600), ("ttyS0", 0, 9600),
])
def test_serial_console_host(console, unit, speed):
    host = Host("www1", mac=MAC, image="web", console=console)
    pxe = text("pxelinux", host)
    directives = [l for l in pxe.splitlines() if l and not l.startswith("#")]
    assert directives[0] == f"SERIAL {unit} {speed}"       # pxelinux wants SERIAL first
    assert f"APPEND {CMDLINE} console=tty0 console={console}\n" in pxe
    assert f"console=tty0 console={console} BOOTIF=01-${{netX/mac:hexhyp}} || goto failed" in text("ipxe", host)
    grub = text("grub", host)
    assert f"serial --unit={unit} --speed={speed}" in grub and "terminal_output serial console" in grub


def test_serial_console_by_group_and_default_from_the_config():
    """The host's own console first, then its group's, then the config's default."""
    from dataclasses import replace
    cfg = replace(CFG, consoles=(("default", "ttyS0,115200n8"), ("rack7", "ttyS1,57600")))
    cases = {Host("www1", mac=MAC, image="web", grp="rack7"): "ttyS1,57600",
             Host("www2", mac=MAC, image="web", grp="other"): "ttyS0,115200n8",
             Host("www3", mac=MAC, image="web"): "ttyS0,115200n8",
             Host("www4", mac=MAC, image="web", grp="rack7", console="hvc0"): "hvc0"}
    for host, console in cases.items():
        assert decide(host, cfg).cmdline.endswith(f"console={console}"), host
    assert "console=" not in decide(Host("www1", mac=MAC, image="web", grp="rack7"), CFG).cmdline


def test_non_serial_and_invalid_consoles():
    hvc = Host("www1", mac=MAC, image="web", console="hvc0")
    assert "console=hvc0" in text("ipxe", hvc) and "SERIAL" not in text("pxelinux", hvc)
    evil = Host("www1", mac=MAC, image="web", console="ttyS0 init=/bin/sh")
    assert "init=" not in text("pxelinux", evil) and "console=" not in text("ipxe", evil)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "appliance.db")
    yield s
    s.close()


def pxelinux_order(mac: str, ip: str) -> list[str]:
    """The names pxelinux asks for, in order (its documented search)."""
    h = hex_ip(IPv4Address(ip))
    return (["pxelinux.cfg/d6a1b2c3-0000-0000-0000-000000000000", "pxelinux.cfg/01-" + mac.replace(":", "-")]
            + [f"pxelinux.cfg/{h[:n]}" for n in range(8, 0, -1)] + ["pxelinux.cfg/default"])


def first_answer(store, names, ip):
    for name in names:
        data = boot_file(store, CFG, name, ip)
        if data is not None:
            return name, data.decode()
    raise AssertionError("no config answered")


def test_hex_ip_spelling():
    assert hex_ip(IPv4Address("192.168.1.100")) == "C0A80164"
    names = pxelinux_order("88:99:aa:bb:cc:dd", "192.168.1.100")
    assert names[2:11] == ["pxelinux.cfg/C0A80164", "pxelinux.cfg/C0A8016", "pxelinux.cfg/C0A801",
                           "pxelinux.cfg/C0A80", "pxelinux.cfg/C0A8", "pxelinux.cfg/C0A", "pxelinux.cfg/C0",
                           "pxelinux.cfg/C", "pxelinux.cfg/default"]


def test_pxelinux_lookup_order(store):
    store.upsert_host(INSTALL)
    # Known MAC: answered at 01-<mac>.
    name, cfg = first_answer(store, pxelinux_order(MAC, "10.77.0.11"), "10.77.0.11")
    assert name == "pxelinux.cfg/01-52-54-00-aa-bb-01" and "HOSTNAME=www1" in cfg
    # A host entered by IP only: 01-<mac> misses, the full hex IP answers.
    store.upsert_host(Host("node7", ip="10.77.0.70", image="web"))
    name, cfg = first_answer(store, pxelinux_order("52:54:00:00:00:70", "10.77.0.70"), "10.77.0.70")
    assert name == "pxelinux.cfg/0A4D0046" and "HOSTNAME=node7" in cfg
    # Unknown machine: everything misses down to default, which boots the local disk.
    name, cfg = first_answer(store, pxelinux_order("52:54:00:00:00:99", "10.77.0.120"), "10.77.0.120")
    assert name == "pxelinux.cfg/default" and "LOCALBOOT 0" in cfg and "KERNEL" not in cfg
    # Another client's hex name is not answered for us.
    assert boot_file(store, CFG, "pxelinux.cfg/0A4D0046", "10.77.0.120") is None


def test_unknown_mac_on_a_hosts_address_stays_unknown(store):
    """Our lease says which MAC holds an address: a stranger there never gets the install."""
    store.upsert_host(Host("node7", mac="52:54:00:00:00:07", ip="10.77.0.70", image="web"))
    store.save_lease(Lease("52:54:00:00:00:99", "10.77.0.70", None, time.time() + 600))
    for name in ("pxelinux.cfg/0A4D0046", "grub/grub.cfg-0A4D0046"):
        assert boot_file(store, CFG, name, "10.77.0.70") is None
    assert b"LOCALBOOT 0" in boot_file(store, CFG, "pxelinux.cfg/default", "10.77.0.70")
    assert b"exit" in boot_file(store, CFG, "ipxe/01-52-54-00-00-00-99.ipxe", "10.77.0.70")
    assert b"\nkernel " not in boot_file(store, CFG, "ipxe/01-52-54-00-00-00-99.ipxe", "10.77.0.70")


def test_ipxe_and_grub_paths(store):
    store.upsert_host(INSTALL)
    ipxe = boot_file(store, CFG, "ipxe/01-52-54-00-AA-BB-01.ipxe", "10.77.0.11").decode()
    assert "HOSTNAME=www1" in ipxe
    unknown = boot_file(store, CFG, "ipxe/01-52-54-00-00-00-99.ipxe", "10.77.0.99").decode()
    assert "unknown machine" in unknown and unknown.rstrip().endswith("exit 1")
    assert "HOSTNAME=www1" in boot_file(store, CFG, "/grub/grub.cfg-01-52-54-00-aa-bb-01", "10.77.0.11").decode()
    assert boot_file(store, CFG, "grub/grub.cfg-01-52-54-00-00-00-99", "10.77.0.99") is None
    assert "HOSTNAME=www1" in boot_file(store, CFG, "grub/grub.cfg-0A4D000B", "10.77.0.11").decode()
    assert "exit" in boot_file(store, CFG, "grub/grub.cfg", "10.77.0.99").decode()
    # syslinux.efi asks relative to its own directory.
    assert "HOSTNAME=www1" in boot_file(store, CFG, "efi64/pxelinux.cfg/01-52-54-00-aa-bb-01", "").decode()
    for other in ("pxelinux.0", "ipxe/../etc/passwd", "pxelinux.cfg/01-zz", "grub/x", "ipxe/01-52.ipxe"):
        assert boot_file(store, CFG, other, "10.77.0.11") is None


def test_netboot_once_flip(store):
    store.upsert_host(INSTALL)
    path = "ipxe/01-52-54-00-aa-bb-01.ipxe"
    assert b"\nkernel " in boot_file(store, CFG, path, "10.77.0.11")
    store.set_netboot("www1", "local")
    assert b"\nkernel " not in boot_file(store, CFG, path, "10.77.0.11")
    store.set_netboot("www1", "install")            # si hosts reinstall www1
    assert b"\nkernel " in boot_file(store, CFG, path, "10.77.0.11")


def test_served_over_appliance_http(tmp_path):
    port = free_port()
    cfg = Config(interface="lo", address=IPv4Address("127.0.0.1"), state_dir=tmp_path,
                 log_dir=tmp_path / "log", http=HttpConfig(port=port))
    ctx = bootconfig.install(Context(cfg, Store(cfg.db_path)))
    ctx.store.upsert_host(Host("www1", mac=MAC, ip="127.0.0.1", image="web"))
    runner = ServiceThread(HttpService(ctx)).start()
    try:
        base = f"http://127.0.0.1:{port}/boot/"
        with urllib.request.urlopen(base + "ipxe/01-52-54-00-aa-bb-01.ipxe", timeout=5) as resp:
            body = resp.read().decode()
        assert f"kernel http://127.0.0.1:{port}/boot/systemimager/kernel" in body
        with urllib.request.urlopen(base + "pxelinux.cfg/7F000001", timeout=5) as resp:
            assert "HOSTNAME=www1" in resp.read().decode()
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + "pxelinux.cfg/01-52-54-00-00-00-99", timeout=5)
        assert err.value.code == 404
    finally:
        runner.stop()
        ctx.store.close()

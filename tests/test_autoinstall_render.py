"""Partition-scheme parsing on real sfdisk output, the install plan, and the rendered script."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from appliance.autoinstall.fstab import parse_fstab
from appliance.autoinstall.plan import build_plan
from appliance.autoinstall.render import render_master, shell_quote, write_master_script
from appliance.autoinstall.scheme import ESP_GPT, SchemeError, parse_disks_json, parse_sfdisk
from appliance.config import parse
from appliance.store import Store

from support.autoinstall import DEBIAN_INTERFACES, make_image, need, sfdisk_dump

GPT_UEFI = "label: gpt\nsize=64M, type=U, name=\"EFI System\"\n,128M,S\n,+,L\n"
MBR = "label: dos\n,64M,83,*\n,128M,82\n,,5\n,128M,83\n,,83\n"


def busybox_syntax(script: str, tmp: Path) -> None:
    need("busybox")
    path = tmp / "check.sh"
    path.write_text(script)
    r = subprocess.run(["busybox", "sh", "-n", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# --- the parser on real sfdisk --dump output ------------------------------------

def test_parse_real_gpt_dump(tmp_path):
    text = sfdisk_dump(tmp_path, "g", 512, GPT_UEFI, "/dev/vda")
    disk = parse_sfdisk(text)
    assert disk.label == "gpt" and disk.device == "/dev/vda" and disk.sector_size == 512
    assert [p.number for p in disk.partitions] == [1, 2, 3]
    esp, swap, root = disk.partitions
    assert esp.is_esp and esp.type == ESP_GPT and esp.name == "EFI System" and esp.start == 2048
    assert esp.size == 64 * 2048 and swap.size == 128 * 2048
    assert root.end <= 512 * 2048 - 33 and disk.size_bytes == 512 * 1024 * 1024
    assert 'name="EFI System"' in esp.attrs and "uuid=" in esp.attrs and "start=" not in esp.attrs
    assert disk.default_grow() == 3


def test_parse_real_mbr_dump_with_logical_partitions(tmp_path):
    disk = parse_sfdisk(sfdisk_dump(tmp_path, "m", 512, MBR, "/dev/sda"))
    assert disk.label == "dos" and disk.label_id.startswith("0x")
    kinds = {p.number: (p.kind, p.type) for p in disk.partitions}
    assert kinds == {1: ("primary", "83"), 2: ("primary", "82"), 3: ("extended", "5"),
                     5: ("logical", "83"), 6: ("logical", "83")}
    assert disk.partition(1).bootable and "bootable" in disk.partition(1).attrs
    assert disk.default_grow() == 6  # the last logical one; its container grows with it


def test_parse_nvme_names_and_grow_marker(tmp_path):
    text = sfdisk_dump(tmp_path, "n", 256, "label: gpt\n,32M,L\n,64M,L\n,+,L\n", "/dev/nvme0n1")
    assert "/dev/nvme0n1p2 :" in text
    disk = parse_sfdisk("# si-grow: /dev/nvme0n1p2\n" + text)
    assert disk.grow == 2 and disk.default_grow() == 2
    with pytest.raises(SchemeError, match="grow marker"):
        parse_sfdisk("# grow: 7\n" + text)


@pytest.mark.parametrize("text, message", [
    ("label: sun\n", "label"),
    ("label: dos\nunit: cylinders\n", "unit"),
    ("label: dos\n/dev/sda1 : start=abc, size=5\n", "not numbers"),
    ("label: dos\n/dev/sda1 : start=1, size=5\n/dev/sda1 : start=9, size=5\n", "twice"),
    ("label: dos\ngarbage without colon\n", "not a header line"),
    ("label: dos\n/dev/sda : start=1, size=5\n", "partition number"),
    ("label: dos\ndevice: /dev/sda;reboot\n", "not a device name"),
    ("label: dos\n/dev/sda$(x)1 : start=1, size=5\n", "not a device name"),
])
def test_parser_rejects_malformed_dumps(text, message):
    with pytest.raises(SchemeError, match=message):
        parse_sfdisk(text)


def test_disks_json_from_lsblk_shape():
    sizes, infos = parse_disks_json('{"blockdevices": [{"name": "sda", "path": "/dev/sda", "type": "disk", '
                                    '"size": 1000, "children": [{"name": "sda1", "path": "/dev/sda1", '
                                    '"type": "part", "fstype": "ext4", "uuid": "u1", "label": "root", '
                                    '"mountpoints": ["/", null]}]}]}')
    assert sizes == {"/dev/sda": 1000}
    assert infos[1].path == "/dev/sda1" and infos[1].uuid == "u1" and infos[1].mountpoints == ("/",)
    with pytest.raises(SchemeError):
        parse_disks_json("[1, 2]")


def test_fstab_parse_and_depth():
    entries = parse_fstab("# c\nUUID=ab / ext4 defaults 0 1\nLABEL=EFI /boot/efi vfat umask=77 0 1\n"
                          "/dev/sda2 none swap sw 0 0\n/dev/disk/by-uuid/cd /srv\\040x xfs defaults 0 2\nshort line\n")
    assert [(e.mountpoint, e.depth, e.key) for e in entries] == [
        ("/", 0, ("uuid", "ab")), ("/boot/efi", 2, ("label", "EFI")), ("none", 0, ("device", "/dev/sda2")),
        ("/srv x", 1, ("uuid", "cd"))]
    assert entries[2].is_swap


# --- plans and rendering --------------------------------------------------------

def uefi_image(tmp: Path, **kw) -> Path:
    text = sfdisk_dump(tmp, "g", 512, GPT_UEFI, "/dev/vda")
    lsblk = {"blockdevices": [{"name": "vda", "path": "/dev/vda", "type": "disk", "size": 512 * 1024 * 1024,
                               "children": [
                                   {"name": "vda1", "path": "/dev/vda1", "fstype": "vfat", "uuid": "ABCD-1234",
                                    "label": "EFI", "mountpoints": ["/boot/efi"]},
                                   {"name": "vda2", "path": "/dev/vda2", "fstype": "swap",
                                    "uuid": "11111111-2222-3333-4444-555555555555"},
                                   {"name": "vda3", "path": "/dev/vda3", "fstype": "ext4",
                                    "uuid": "0a1b2c3d-1111-2222-3333-444455556666", "mountpoints": ["/"]}]}]}
    return make_image(tmp / "uefi", schemes={"/dev/vda": text}, disks_json=lsblk,
                      fstab="UUID=0a1b2c3d-1111-2222-3333-444455556666 / ext4 errors=remount-ro 0 1\n"
                            "UUID=ABCD-1234 /boot/efi vfat umask=0077 0 1\n/dev/vda2 none swap sw 0 0\n"
                            "proc /proc proc defaults 0 0\n",
                      interfaces=DEBIAN_INTERFACES, **kw)


def mbr_two_disk_image(tmp: Path) -> Path:
    sda = sfdisk_dump(tmp, "m", 512, MBR, "/dev/sda")
    sdb = sfdisk_dump(tmp, "b", 400, "label: gpt\n,+,L\n", "/dev/sdb")
    return make_image(tmp / "mbr", schemes={"/dev/sda": sda, "/dev/sdb": sdb},
                      fstab="/dev/sda6 / ext4 defaults 0 1\nLABEL=boot /boot ext2 defaults 0 2\n"
                            "/dev/sda2 none swap sw 0 0\n/dev/sda5 /var xfs defaults 0 2\n"
                            "/dev/sdb1 /srv ext4 defaults 0 2\ntmpfs /tmp tmpfs defaults 0 0\n",
                      mounted="/dev/sda1 /boot ext2 rw 0 0\n", networkd=True)


def test_uefi_gpt_plan_and_script(tmp_path):
    root = uefi_image(tmp_path)
    plan = build_plan("web", root, ip_method="dynamic_dhcp", post_install="shutdown")
    assert plan.problems == [] and plan.esp.mountpoint == "/boot/efi"
    assert [f.mountpoint for f in plan.filesystems] == ["/", "/boot/efi"]
    assert [(s.partition.number, s.uuid) for s in plan.swaps] == [(2, "11111111-2222-3333-4444-555555555555")]
    script = render_master(plan)
    busybox_syntax(script, tmp_path)
    assert "DISK0=${DISK0:-/dev/vda}" in script and "DISK0_GROW=${DISK0_GROW-3}" in script
    assert "label: gpt" in script and f"type={ESP_GPT}" in script
    assert "-i \"$(echo \"$FS1_UUID\" | tr -d -)\"" in script and "FS1_UUID='ABCD-1234'" in script
    assert "-U \"$FS2_UUID\"" in script  # swap keeps its UUID
    assert "FS0_UUID='0a1b2c3d-1111-2222-3333-444455556666'" in script
    assert "EFI_DIR='/boot/efi'" in script and "--target=x86_64-efi" in script and "--removable" in script
    assert "IP_METHOD=${IP_METHOD:-dynamic_dhcp}" in script
    assert "POST_INSTALL=${SI_POST_INSTALL:-shutdown}" in script
    assert "rsync -aHAX --numeric-ids" in script and '"$IMAGESERVER::$IMAGENAME/"' in script
    assert "/etc/network/interfaces" in script and "10-systemimager.network" not in script
    assert "'source /etc/network/interfaces.d/*'" in script and "NET_IFACE=${NET_IFACE:-ens3}" in script
    assert "#sfdisk -uM $DISK0 <<EOF" in script  # the manual's 13.21 example, commented
    # the mount order puts / before /boot/efi
    assert script.index("'/' ext4") < script.index("'/boot/efi' vfat")
    assert "si-progress done 100" in script and "post_state succeeded" in script
    assert script.index("si-progress done 100") < script.index('reboot) sleep 2; reboot -f')


def test_mbr_several_disks_swap_and_networkd(tmp_path):
    plan = build_plan("cluster", mbr_two_disk_image(tmp_path), ip_method="static")
    assert plan.problems == []
    assert [(d.var, d.disk.device, d.disk.label, d.grow) for d in plan.disks] == [
        ("DISK0", "/dev/sda", "dos", 6), ("DISK1", "/dev/sdb", "gpt", 1)]
    assert [(f.mountpoint, f.disk, f.partition.number, f.fstype) for f in plan.filesystems] == [
        ("/", 0, 6, "ext4"), ("/boot", 0, 1, "ext2"), ("/srv", 1, 1, "ext4"), ("/var", 0, 5, "xfs")]
    assert plan.filesystems[1].label == "boot"  # LABEL= mapped through mounted_filesystems
    assert plan.net_networkd and not plan.net_ifupdown and plan.esp is None
    script = render_master(plan)
    busybox_syntax(script, tmp_path)
    assert "DISK1=${DISK1:-/dev/sdb}" in script
    assert 'sfdisk --wipe always --wipe-partitions always "$DISK0"' in script
    assert 'sfdisk --wipe always --wipe-partitions always "$DISK1"' in script
    # the golden disk's layout travels in the script: the extended container (3) and its logicals
    assert re.search(r"^ *3 \d+ \d+ extended type=5$", script, re.M), script
    assert re.search(r"^ *5 \d+ \d+ logical type=83$", script, re.M)
    assert "-L 'boot'" in script and 'mkfs.xfs || echo mkfs.xfs)" -f -m uuid=' in script
    assert "BIOS_BOOT_PART=yes" in script and "EFI_DIR=''" in script
    assert "10-systemimager.network" in script and "MACAddress=$MAC" in script
    assert "IP_METHOD=${IP_METHOD:-static}" in script


@pytest.mark.parametrize("method", ["static_dhcp", "dynamic_dhcp", "static", "replicant"])
def test_each_ip_method_renders_and_configures(tmp_path, method):
    """Run configure_network from the rendered script against a scratch target."""
    need("busybox")
    root = uefi_image(tmp_path, networkd=True)
    script = render_master(build_plan("web", root, ip_method=method))
    assert f"IP_METHOD=${{IP_METHOD:-{method}}}" in script
    path = tmp_path / "web.master"
    path.write_text(script)
    target = tmp_path / "target"
    (target / "etc/network").mkdir(parents=True)
    (target / "etc/network/interfaces").write_text("# golden\n")
    (target / "etc/hostname").write_text("golden\n")
    (target / "etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\tgolden.lab.example golden\n")
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "si-log").write_text("#!/bin/sh\necho \"$*\" >>\"$LOGFILE\"\n")
    (stub / "si-fail").write_text("#!/bin/sh\necho \"FAIL $*\" >>\"$LOGFILE\"\nexit 1\n")
    for s in ("si-log", "si-fail"):
        os.chmod(stub / s, 0o755)
    env = dict(os.environ, PATH=f"{stub}:{os.environ['PATH']}", SI_FUNCTIONS_ONLY="1", IMAGESERVER="10.9.0.1",
               TARGET=str(target), SI_TMP=str(tmp_path / "t"), LOGFILE=str(tmp_path / "log"),
               HOSTNAME="node7", DOMAINNAME="lab.example", IPADDR="10.9.0.17", NETMASK="255.255.252.0",
               GATEWAY="10.9.0.1", MAC="52:54:00:aa:bb:cc")
    r = subprocess.run(["busybox", "sh", "-c", f". {path}; configure_network; configure_hostname"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    interfaces = (target / "etc/network/interfaces").read_text()
    networkd = target / "etc/systemd/network/10-systemimager.network"
    hosts = (target / "etc/hosts").read_text()
    if method == "replicant":       # the manual: don't mess with the network settings
        assert interfaces == "# golden\n" and not networkd.exists()
        assert (target / "etc/hostname").read_text() == "golden\n" and "golden.lab.example golden" in hosts
        assert "left as they are" in (tmp_path / "log").read_text()
        assert "left as the image has them" in (tmp_path / "log").read_text()
        return
    assert (target / "etc/hostname").read_text() == "node7\n"
    if method == "static":
        assert "iface ens3 inet static" in interfaces and "address 10.9.0.17" in interfaces
        assert "netmask 255.255.252.0" in interfaces and "gateway 10.9.0.1" in interfaces
        text = networkd.read_text()
        assert "MACAddress=52:54:00:aa:bb:cc" in text and "Address=10.9.0.17/22" in text
        assert "Gateway=10.9.0.1" in text
        assert "10.9.0.17\tnode7.lab.example node7" in hosts
    else:
        assert "iface ens3 inet dhcp" in interfaces and "source /etc/network/interfaces.d/*" in interfaces
        assert "DHCP=ipv4" in networkd.read_text()
        assert "127.0.1.1\tnode7.lab.example node7" in hosts
    assert "golden" not in hosts  # the golden client's name is gone


def test_part_helper_names_partitions(tmp_path):
    need("busybox")
    path = tmp_path / "s.master"
    path.write_text(render_master(build_plan("web", uefi_image(tmp_path))))
    r = subprocess.run(["busybox", "sh", "-c", f". {path}; DISK3=/dev/nvme1n1; part /dev/vda 1; part /dev/sda 12; "
                        "part /dev/nvme0n1 2; part /dev/loop0 1; part /dev/mmcblk0 3; part DISK3 4"],
                       env=dict(os.environ, SI_FUNCTIONS_ONLY="1", IMAGESERVER="x", SI_TMP=str(tmp_path / "t")),
                       capture_output=True, text=True)
    assert r.stdout.split() == ["/dev/vda1", "/dev/sda12", "/dev/nvme0n1p2", "/dev/loop0p1", "/dev/mmcblk0p3",
                                "/dev/nvme1n1p4"], r.stderr


def _layout(tmp_path: Path, script: Path, sectors: int, grow: str, minimum: int, table: str,
            tail: int = 34) -> subprocess.CompletedProcess:
    sysfs = tmp_path / "sys/class/block/vdz"
    (sysfs / "queue").mkdir(parents=True, exist_ok=True)
    (sysfs / "size").write_text(f"{sectors}\n")
    (sysfs / "queue/logical_block_size").write_text("512\n")
    return subprocess.run(["busybox", "sh", "-c", f". {script}; layout /dev/vdz '{grow}' {minimum} 512 DISK0 {tail}"],
                          input=table, env=dict(os.environ, SI_FUNCTIONS_ONLY="1", IMAGESERVER="x",
                                                SI_SYSFS=str(tmp_path / "sys"), SI_TMP=str(tmp_path / "t")),
                          capture_output=True, text=True)


def test_layout_grows_shrinks_and_refuses(tmp_path):
    need("busybox")
    script = tmp_path / "s.master"
    script.write_text(render_master(build_plan("web", uefi_image(tmp_path))))
    table = "label: dos\nunit: sectors\n1 2048 65536 primary type=83, bootable\n2 67584 131072 primary type=82\n" \
            "3 198656 415744 extended type=5\n5 200704 131072 logical type=83\n6 333824 280576 logical type=83\n"
    # Golden disk: 614400 sectors (300 MiB). Target 1 GiB: partition 6 and its container grow.
    r = _layout(tmp_path, script, 2 * 1024 * 1024, "6", 2048, table, tail=0)
    assert r.returncode == 0, r.stdout
    lines = {l.split(" :")[0]: l for l in r.stdout.splitlines() if " : " in l}
    extra = (2 * 1024 * 1024 - 614400) // 2048 * 2048
    assert f"start=333824, size={280576 + extra}" in lines["/dev/vdz6"]
    assert f"start=198656, size={415744 + extra}" in lines["/dev/vdz3"]
    assert "start=2048, size=65536, type=83, bootable" in lines["/dev/vdz1"]
    # Growing a middle partition moves the later ones.
    r = _layout(tmp_path, script, 2 * 1024 * 1024, "5", 2048, table, tail=0)
    lines = {l.split(" :")[0]: l for l in r.stdout.splitlines() if " : " in l}
    assert f"start={333824 + extra}, size=280576" in lines["/dev/vdz6"]
    assert f"start=200704, size={131072 + extra}" in lines["/dev/vdz5"]
    # A smaller disk (250 MiB) shrinks partition 6 when it stays above its minimum.
    r = _layout(tmp_path, script, 250 * 2048, "6", 100000, table, tail=0)
    assert r.returncode == 0, r.stdout
    assert "/dev/vdz6 : start=333824, size=178176" in r.stdout
    # Too small: a clear message naming the disk and the sizes.
    r = _layout(tmp_path, script, 200 * 2048, "6", 200000, table, tail=0)
    assert r.returncode == 1
    assert "disk /dev/vdz is 200 MiB, too small for this image: it needs at least" in r.stdout
    # No grow partition and a smaller disk: refused too.
    r = _layout(tmp_path, script, 250 * 2048, "", 0, table, tail=0)
    assert r.returncode == 1 and "too small" in r.stdout


def test_image_without_schemes_renders_a_script_that_fails_clearly(tmp_path):
    root = tmp_path / "bare"
    (root / "etc").mkdir(parents=True)
    (root / "etc/fstab").write_text("/dev/sda1 / ext4 defaults 0 1\n")
    plan = build_plan("bare", root)
    script = render_master(plan)
    busybox_syntax(script, tmp_path)
    assert "no partition schemes" in script and "fail 'cannot install image bare:" in script


def test_unmapped_fstab_entries_are_problems_or_notes(tmp_path):
    root = uefi_image(tmp_path)
    with open(root / "etc/fstab", "a") as f:
        f.write("/dev/mapper/vg-data /data ext4 defaults 0 2\nUUID=deadbeef none swap sw 0 0\n")
    plan = build_plan("web", root)
    assert any("LVM/RAID" in p for p in plan.problems)
    assert any("UUID=deadbeef" in n for n in plan.notes)
    script = render_master(plan)
    assert "log 'note: left alone: fstab line 6 (UUID=deadbeef none)" in script
    assert "fail 'cannot install image web: fstab line 5 (/dev/mapper/vg-data /data): LVM/RAID" in script


def test_trailing_swap_does_not_grow(tmp_path):
    text = sfdisk_dump(tmp_path, "s", 256, "label: dos\n,200M,83\n,,82\n", "/dev/vda")
    root = make_image(tmp_path / "s", schemes={"/dev/vda": text},
                      fstab="/dev/vda1 / ext4 defaults 0 1\n/dev/vda2 none swap sw 0 0\n")
    plan = build_plan("s", root)
    assert plan.disks[0].grow == 1
    assert "DISK0_GROW=${DISK0_GROW-1}" in render_master(plan)


def test_shell_quote_roundtrip(tmp_path):
    need("busybox")
    value = "it's $HOME `x` \"y\""
    r = subprocess.run(["busybox", "sh", "-c", f"printf %s {shell_quote(value)}"], capture_output=True, text=True)
    assert r.stdout == value


def stored_image(tmp_path, version: int, ip_method: str, post_install: str):
    """A config and store holding image "web" at `version` (a UEFI image tree)."""
    cfg = parse({"interface": "lo", "address": "10.1.0.1", "state_dir": str(tmp_path / "state"),
                 "services": {"dhcp": False}})
    store = Store(cfg.db_path)
    version_dir = cfg.images_dir / ".versions" / "web" / str(version)
    uefi_image(tmp_path)
    version_dir.parent.mkdir(parents=True)
    os.rename(tmp_path / "uefi", version_dir)
    store.add_image_version("web", version, str(version_dir), ip_method=ip_method, post_install=post_install)
    store.finish_image_version("web", version, 1)
    return cfg, store


def test_write_master_script_atomic_and_from_store(tmp_path):
    cfg, store = stored_image(tmp_path, 2, "replicant", "beep")
    path = write_master_script(cfg, store, "web")
    assert path == cfg.scripts_dir / "web.master" and os.access(path, os.X_OK)
    text = path.read_text()
    assert "IP_METHOD=${IP_METHOD:-replicant}" in text and "POST_INSTALL=${SI_POST_INSTALL:-beep}" in text
    assert [p.name for p in cfg.scripts_dir.iterdir()] == ["web.master"]  # no temp files left
    with pytest.raises(ValueError):
        write_master_script(cfg, store, "../evil")


def test_master_script_rewritten_only_when_its_inputs_change(tmp_path):
    """A no-change getimage leaves the script (and an edit to it) alone; new settings rewrite it."""
    cfg, store = stored_image(tmp_path, 1, "static_dhcp", "reboot")
    path = write_master_script(cfg, store, "web")
    path.write_text(path.read_text() + "# edited by hand\n")
    assert "# edited by hand" in write_master_script(cfg, store, "web").read_text(), "same inputs: kept"
    notes = []
    store.set_image_details("web", ip_method="replicant", post_install="reboot", golden_client="g")
    text = write_master_script(cfg, store, "web", note=notes.append).read_text()
    assert "# edited by hand" not in text and "IP_METHOD=${IP_METHOD:-replicant}" in text
    # the manual's customised master script: the edit is kept beside the new one, and said
    [backup] = cfg.scripts_dir.glob("web.master.edited-*")
    assert backup.read_text().endswith("# edited by hand\n") and "kept as" in notes[0] and str(backup) in notes[0]


def test_an_edited_master_script_can_be_left_alone_and_an_unedited_one_is_just_replaced(tmp_path):
    from appliance.autoinstall.render import master_edited
    cfg, store = stored_image(tmp_path, 1, "static_dhcp", "reboot")
    path = write_master_script(cfg, store, "web")
    assert not master_edited(cfg, "web")
    store.set_image_details("web", ip_method="static", post_install="reboot", golden_client="g")
    notes = []
    assert "IP_METHOD=${IP_METHOD:-static}" in write_master_script(cfg, store, "web", note=notes.append).read_text()
    assert notes == [] and list(cfg.scripts_dir.glob("*.edited-*")) == [], "not edited: no backup, no word"
    path.write_text(path.read_text().replace("IP_METHOD=${IP_METHOD:-static}", "IP_METHOD=${IP_METHOD:-replicant}"))
    assert master_edited(cfg, "web")
    store.set_image_details("web", ip_method="dynamic_dhcp", post_install="reboot", golden_client="g")
    write_master_script(cfg, store, "web", keep_edited=True, note=notes.append)
    assert "IP_METHOD=${IP_METHOD:-replicant}" in path.read_text() and "left as it is" in notes[0]


# --- the boot loader step, run for real against scratch targets (own mount namespace) ---

def _fake_tool(target: Path, rel: str, body: str = "") -> None:
    path = target / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho \"{rel} $*\" >>/si-tools.log\n{body}")
    os.chmod(path, 0o755)


def _target_with_shell(tmp_path: Path) -> Path:
    target = tmp_path / "target"
    (target / "bin").mkdir(parents=True)
    import shutil
    shutil.copy2(shutil.which("busybox"), target / "bin/busybox")
    os.symlink("busybox", target / "bin/sh")
    return target


def _install_bootloader(tmp_path: Path, target: Path, **env) -> tuple[subprocess.CompletedProcess, str]:
    need("busybox", "unshare")
    script = tmp_path / "web.master"
    script.write_text(render_master(build_plan("web", uefi_image(tmp_path))))
    stub = tmp_path / "bin"
    stub.mkdir(exist_ok=True)
    (stub / "si-log").write_text("#!/bin/sh\necho \"$*\" >>\"$LOGFILE\"\n")
    (stub / "si-fail").write_text("#!/bin/sh\necho \"FAIL $*\" >>\"$LOGFILE\"\nexit 1\n")
    (stub / "si-progress").write_text("#!/bin/sh\n")
    for s in ("si-log", "si-fail", "si-progress"):
        os.chmod(stub / s, 0o755)
    log = tmp_path / "log"
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "busybox", "sh", "-c",
                        f". {script}; install_bootloader; umount_all"],
                       env=dict(os.environ, PATH=f"{stub}:{os.environ['PATH']}", SI_FUNCTIONS_ONLY="1",
                                IMAGESERVER="x", TARGET=str(target), SI_TMP=str(tmp_path / "t"),
                                LOGFILE=str(log), **env), capture_output=True, text=True)
    return r, log.read_text() if log.exists() else ""


def test_bootloader_skipped_with_a_clear_line_when_the_image_has_none(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    r, log = _install_bootloader(tmp_path, target)
    assert r.returncode == 0, r.stderr
    assert "boot loader: skipped, the image has neither GRUB (grub-install) nor extlinux" in log


def test_grub_for_uefi_is_installed_removable_from_inside_the_image(tmp_path):
    target = _target_with_shell(tmp_path)
    (target / "usr/lib/grub/x86_64-efi").mkdir(parents=True)
    (target / "usr/lib/grub/i386-pc").mkdir(parents=True)   # no BIOS boot partition on this GPT disk
    _fake_tool(target, "usr/sbin/grub-install", "[ -c /dev/null ] && [ -r /proc/self/mounts ] && echo bound >>/si-tools.log\n")
    _fake_tool(target, "usr/sbin/update-grub")
    r, log = _install_bootloader(tmp_path, target, BOOT_DISK="/dev/vdq")
    assert r.returncode == 0, r.stdout + r.stderr + log
    assert (target / "si-tools.log").read_text().splitlines() == [
        "usr/sbin/grub-install --target=x86_64-efi --efi-directory=/boot/efi --removable --no-nvram",
        "bound", "usr/sbin/update-grub "]
    assert "boot loader: GRUB installed for UEFI on /dev/vdq" in log
    assert not os.listdir(target / "proc")  # bind mounts gone again


def test_grub_that_fits_no_firmware_fails_clearly(tmp_path):
    target = _target_with_shell(tmp_path)
    _fake_tool(target, "usr/sbin/grub-install")
    r, log = _install_bootloader(tmp_path, target)
    assert r.returncode == 1
    assert "FAIL boot loader: the image has GRUB but neither i386-pc" in log


def test_extlinux_installed_with_its_mbr(tmp_path):
    target = _target_with_shell(tmp_path)
    _fake_tool(target, "usr/bin/extlinux")
    (target / "usr/lib/syslinux/mbr").mkdir(parents=True)
    (target / "usr/lib/syslinux/mbr/gptmbr.bin").write_bytes(b"\xab" * 440)
    (target / "usr/lib/syslinux/mbr/mbr.bin").write_bytes(b"\xcd" * 440)
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\0" * 4096)
    r, log = _install_bootloader(tmp_path, target, BOOT_DISK=str(disk))
    assert r.returncode == 0, r.stdout + r.stderr + log
    assert (target / "si-tools.log").read_text().splitlines() == ["usr/bin/extlinux --install /boot/extlinux"]
    data = disk.read_bytes()
    assert data[:440] == b"\xab" * 440 and data[440:] == b"\0" * (4096 - 440)  # GPT disk: gptmbr.bin
    assert f"boot loader: extlinux installed in /boot/extlinux on {disk}" in log


def test_missing_golden_disks_map_to_the_disks_this_machine_has(tmp_path):
    need("busybox")
    script = tmp_path / "m.master"
    script.write_text(render_master(build_plan("cluster", mbr_two_disk_image(tmp_path))))
    sysfs = tmp_path / "sys"
    for name in ("vda", "vdb", "sr0", "loop0", "nvme0n1"):
        (sysfs / "block" / name).mkdir(parents=True)
        (sysfs / "class/block" / name).mkdir(parents=True)

    def mapped(**env) -> subprocess.CompletedProcess:
        return subprocess.run(["busybox", "sh", "-c", f". {script}; map_disks; echo \"$DISK0 $DISK1\""],
                              env=dict(os.environ, SI_FUNCTIONS_ONLY="1", IMAGESERVER="x", SI_SYSFS=str(sysfs),
                                       SI_TMP=str(tmp_path / "t"), PATH="/nonexistent:/usr/bin:/bin", **env),
                              capture_output=True, text=True)

    # Golden /dev/sda and /dev/sdb are absent: the first disks in name order, never a CD or loop.
    r = mapped()
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "/dev/nvme0n1 /dev/vda", r.stdout + r.stderr
    assert "DISK0: the golden client's /dev/sda is not on this machine; using /dev/nvme0n1" in r.stdout
    # A disk that exists and is set stays; the other golden name takes the next free one.
    r = mapped(DISK0="/dev/vda")
    assert r.stdout.splitlines()[-1] == "/dev/vda /dev/nvme0n1"
    # A removable disk (the USB stick booted from) is never picked.
    (sysfs / "block/nvme0n1/removable").write_text("1\n")
    r = mapped()
    assert r.stdout.splitlines()[-1] == "/dev/vda /dev/vdb"
    # A disk set by hand that does not exist is an error, not a guess.
    r = mapped(DISK1="/dev/sdq")
    assert r.returncode == 1 and "DISK1=/dev/sdq: there is no such disk on this machine" in r.stdout + r.stderr


# --- the static shell library and the decisions made in plan.py --------------------------

def small_image(tmp: Path, layout: str, root: int = 1) -> Path:
    """One disk partitioned by sfdisk from LAYOUT, with / on partition ROOT."""
    text = sfdisk_dump(tmp, "d", 256, layout, "/dev/vda")
    return make_image(tmp / "img", schemes={"/dev/vda": text}, fstab=f"/dev/vda{root} / ext4 defaults 0 1\n")


def test_the_shell_library_is_static_and_copied_whole_into_each_script(tmp_path):
    from appliance.autoinstall.render import LIBRARY
    library = LIBRARY.read_text()
    assert "{{" not in library and "{%" not in library, "the library is plain shell, not a template"
    busybox_syntax(library, tmp_path)
    script = render_master(build_plan("web", small_image(tmp_path, "label: dos\n,+,83\n")))
    assert script.count(library) == 1, "each script carries the library once, verbatim"
    # What the library reads, the script's own part sets before it.
    head = script[:script.index(library)]
    for name in ("DISK_VARS", "TAR_EXTRACT_OPTIONS", "BOOT_DISK_VAR", "BOOT_LABEL", "BIOS_BOOT_PART", "EFI_DIR"):
        assert re.search(rf"^{name}=", head, re.M), name


def test_unpack_options_reach_tar_as_the_words_pack_gives(tmp_path):
    """The header holds tar's options as quoted shell words; unpack_stream turns them back into argv."""
    from services.fleet import pack
    script = render_master(build_plan("web", small_image(tmp_path, "label: dos\n,+,83\n")))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "zstd").write_text("#!/bin/sh\ncat >/dev/null\n")
    (bindir / "tar").write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done >"$ARGV_OUT"\n')
    for tool in ("zstd", "tar"):
        (bindir / tool).chmod(0o755)
    (tmp_path / "s.sh").write_text(script)
    (tmp_path / "--xattrs-include=glob-bait").write_text("")     # an unquoted * would match this
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "SI_FUNCTIONS_ONLY": "1",
           "IMAGESERVER": "10.0.0.1", "TARGET": str(tmp_path / "a"), "SI_TMP": str(tmp_path / "t"),
           "ARGV_OUT": str(tmp_path / "argv")}
    r = subprocess.run(["sh", "-c", ". ./s.sh; realtool() { echo tar; }; unpack_stream </dev/null"],
                       cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "argv").read_text().split("\n")[:-1] == [*pack.EXTRACT[1:], "-C", str(tmp_path / "a")]


@pytest.mark.parametrize("sfdisk, root, expected", [
    ("label: dos\n,+,83\n", 1, True),                                          # the gap after the MBR
    ("label: gpt\nsize=64M, type=U\n,+,L\n", 2, False),                       # GPT, no BIOS boot partition
    ("label: gpt\nsize=1M, type=21686148-6449-6E6F-744E-656564454649\n,+,L\n", 2, True),
], ids=["mbr", "gpt-uefi-only", "gpt-bios-boot"])
def test_bios_boot_is_decided_in_the_plan(tmp_path, sfdisk, root, expected):
    plan = build_plan("web", small_image(tmp_path, sfdisk, root))
    assert not plan.problems, plan.problems
    assert plan.bios_boot_partition is expected
    assert f"BIOS_BOOT_PART={'yes' if expected else 'no'}" in render_master(plan)

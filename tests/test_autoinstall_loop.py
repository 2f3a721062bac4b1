"""The rendered master script run for real: busybox sh, loop-device disks, the real
rsync daemon and the appliance's real HTTP progress endpoint, in network namespaces.

Server namespace: rsync --daemon (a minimal conf of this test's own) and the
appliance HTTP app. Client namespace: `busybox sh <image>.master` with stub
si-progress/si-log/si-fail that record each call and post it the way the
initrd's commands do. Two loop disks stand in for the golden client's /dev/sda
(MBR, grown) and /dev/sdb (GPT, shrunk).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.autoinstall import write_master_script
from appliance.config import parse
from appliance.lab.netns import Lab
from appliance.store import Store
from appliance.store.records import Host

from support.autoinstall import MIB, make_image, need, sfdisk_dump, write_stubs

SERVER, CLIENT = "10.93.0.1", "10.93.0.10"
SICLIENT = Path(__file__).resolve().parents[1] / "appliance" / "client" / "siclient.py"
XFS_UUID = "5f0e9d6a-0000-4000-8000-000000000001"
CHANGED = {"etc/fstab", "etc/hostname", "etc/hosts", "etc/network/interfaces",
           "etc/systemd/network/10-systemimager.network", "boot/grub/grub.cfg",
           "boot/grub/si-test-grub-install.log", "boot/grub/i386-pc/", "boot/grub/i386-pc/normal.mod"}

HTTP_SERVER = """
import sys
from aiohttp import web
from appliance.config import parse
from appliance.http import build_app
from appliance.service import Context
from appliance.store import Store
cfg = parse({"interface": "si0", "address": sys.argv[1], "state_dir": sys.argv[2], "log_dir": sys.argv[3],
             "services": {"dhcp": False}, "http": {"port": 8080}})
web.run_app(build_app(Context(cfg, Store(cfg.db_path))), host=sys.argv[1], port=8080, print=None)
"""

def golden_image(tmp: Path) -> Path:
    sda = sfdisk_dump(tmp, "sda", 256, "label: dos\n,48M,83,*\n,32M,82\n,,5\n,64M,83\n,,83\n", "/dev/sda")
    sdb = sfdisk_dump(tmp, "sdb", 400, "label: gpt\nsize=+, type=L, name=\"srv\"\n", "/dev/sdb")
    lsblk = {"blockdevices": [{"name": "sdb", "path": "/dev/sdb", "type": "disk", "size": 400 * MIB,
                               "children": [{"name": "sdb1", "path": "/dev/sdb1", "type": "part", "fstype": "xfs",
                                             "uuid": XFS_UUID, "mountpoints": ["/srv"]}]}]}
    root = make_image(
        tmp / "image", schemes={"/dev/sda": sda, "/dev/sdb": sdb}, disks_json=lsblk,
        fstab="# golden fstab\n/dev/sda6 / ext4 errors=remount-ro 0 1\nLABEL=boot /boot ext2 defaults 0 2\n"
              "/dev/sda2 none swap sw 0 0\n/dev/sda5 /var ext4 defaults 0 2\n"
              f"UUID={XFS_UUID} /srv xfs defaults 0 2\nproc /proc proc defaults 0 0\n",
        mounted="/dev/sda1 /boot ext2 rw 0 0\n/dev/sda6 / ext4 rw 0 0\n",
        interfaces="auto lo\niface lo inet loopback\n\nallow-hotplug ens3\niface ens3 inet dhcp\n",
        networkd=True,
        # No srv/ at all, though fstab mounts /srv (an image taken with it excluded, as the
        # Debian golden lacked boot/efi): rsync --delete must leave the mount point alone.
        files={"boot/vmlinuz-6.1": "kernel\n" * 1000, "var/lib/state": "v\n",
               "usr/bin/tool": "#!/bin/sh\necho tool\n", "home/user/notes": "n\n",
               "usr/bin/python3": "#!/bin/sh\n",     # the client tools need it: they are installed
               # The image's e2fsprogs "knows" no metadata_csum: the new file systems must not have it.
               "etc/mke2fs.conf": "[defaults]\n\tbase_features = sparse_super,large_file,filetype,"
                                  "resize_inode,dir_index,ext_attr\n\tinode_size = 256\n[fs_types]\n"
                                  "\text4 = {\n\t\tfeatures = has_journal,extent,huge_file,flex_bg,64bit,"
                                  "dir_nlink,extra_isize\n\t}\n"})
    big = root / "usr/share/big.bin"
    big.parent.mkdir(parents=True, exist_ok=True)
    big.write_bytes(os.urandom(8 * MIB))
    os.link(big, root / "usr/share/big-hardlink.bin")
    os.symlink("tool", root / "usr/bin/tool-link")
    os.chmod(root / "usr/bin/tool", 0o4755)
    os.chmod(root / "usr/bin/python3", 0o755)
    os.chown(root / "home/user/notes", 1234, 2345)
    os.chown(root / "home/user", 1234, 2345)
    os.setxattr(root / "usr/bin/tool", "user.si-test", b"kept")
    for d in ("proc", "sys", "dev", "tmp"):
        (root / d).mkdir(exist_ok=True)
    add_fake_grub(root)
    return root


def add_fake_grub(root: Path) -> None:
    """Stand-ins for GRUB's tools run by chroot: a static busybox as /bin/sh and scripts
    that record how they were called (and whether /dev, /proc, /sys were bound)."""
    (root / "bin").mkdir(exist_ok=True)
    shutil.copy2(shutil.which("busybox"), root / "bin/busybox")
    os.symlink("busybox", root / "bin/sh")
    (root / "usr/lib/grub/i386-pc").mkdir(parents=True)
    (root / "usr/lib/grub/i386-pc/normal.mod").write_bytes(b"\0" * 64)
    (root / "usr/sbin").mkdir(parents=True, exist_ok=True)
    (root / "usr/sbin/grub-install").write_text(
        "#!/bin/sh\nmkdir -p /boot/grub/i386-pc\n{ echo \"args: $*\"; [ -r /proc/self/mounts ] && echo proc; "
        "[ -d /sys/block ] && echo sys; [ -c /dev/null ] && echo dev; } >/boot/grub/si-test-grub-install.log\n"
        "cp /usr/lib/grub/i386-pc/normal.mod /boot/grub/i386-pc/\n")
    (root / "usr/sbin/update-grub").write_text("#!/bin/sh\necho '# from update-grub' >/boot/grub/grub.cfg\n")
    for tool in ("grub-install", "update-grub"):
        os.chmod(root / "usr/sbin" / tool, 0o755)


def losetup(img: Path, size_mib: int) -> str:
    with open(img, "wb") as f:
        f.truncate(size_mib * MIB)
    return subprocess.run(["losetup", "-fP", "--show", str(img)], capture_output=True, text=True,
                          check=True).stdout.strip()


def blkid(dev: str) -> dict[str, str]:
    out = subprocess.run(["blkid", "-c", "/dev/null", "-o", "export", dev], capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@pytest.fixture
def rig(tmp_path):
    need("busybox", "rsync", "sfdisk", "losetup", "mkfs.ext4", "mkfs.xfs", "mkswap", "blkid", "curl", "partx")
    loops: list[str] = []
    mounts: list[Path] = []
    lab = Lab()
    try:
        yield tmp_path, lab, loops, mounts
    finally:
        lab.close()
        for m in reversed(mounts):
            subprocess.run(["umount", str(m)], capture_output=True)
        for dev in loops:
            subprocess.run(["losetup", "-d", dev], capture_output=True)


def test_master_script_installs_onto_loop_disks(rig):
    tmp, lab, loops, mounts = rig
    image = golden_image(tmp)
    cfg = parse({"interface": "si0", "address": SERVER, "state_dir": str(tmp / "state"),
                 "log_dir": str(tmp / "log"), "services": {"dhcp": False}})
    store = Store(cfg.db_path)
    store.add_image_version("gold", 1, str(image), ip_method="static", post_install="reboot")
    store.finish_image_version("gold", 1, 1)
    store.upsert_host(Host("node1", mac="52:54:00:12:34:56", ip=CLIENT, image="gold"))
    master = write_master_script(cfg, store, "gold")

    # Disks: sda 256 MiB -> 384 MiB (grows), sdb 400 MiB -> 352 MiB (shrinks; xfs needs 300).
    loops.append(losetup(tmp / "disk0.img", 384))
    loops.append(losetup(tmp / "disk1.img", 352))

    srv, cli = lab.namespace("ais"), lab.namespace("aic")
    lab.veth(srv, "eth0", cli, "eth0", f"{SERVER}/24", f"{CLIENT}/24")
    conf = tmp / "rsyncd.conf"
    conf.write_text(f"use chroot = no\naddress = {SERVER}\nport = 873\npid file = {tmp}/rsyncd.pid\n"
                    f"log file = {tmp}/rsyncd.log\n\n[gold]\n    path = {image}\n    read only = yes\n"
                    "    uid = 0\n    gid = 0\n    numeric ids = yes\n")
    lab.popen(srv, "rsync", "--daemon", "--no-detach", f"--config={conf}")
    http = lab.popen(srv, sys.executable, "-c", HTTP_SERVER, SERVER, str(cfg.state_dir), str(cfg.log_dir),
                     stdout=subprocess.DEVNULL, stderr=open(tmp / "http.err", "w"))
    deadline = time.time() + 20
    while True:
        ok_http = lab.run(cli, "curl", "-sf", f"http://{SERVER}:8080/api/health", check=False).returncode == 0
        ok_rsync = lab.run(cli, "rsync", f"{SERVER}::", check=False).returncode == 0
        if ok_http and ok_rsync:
            break
        assert http.poll() is None, (tmp / "http.err").read_text()
        assert time.time() < deadline, "rsync daemon or HTTP app did not come up in the server namespace"
        time.sleep(0.2)

    stubs = write_stubs(tmp / "stubs")
    calls = tmp / "calls"
    env = dict(os.environ, PATH=f"{stubs}:/usr/sbin:/usr/bin:/sbin:/bin", CALLS=str(calls),
               IMAGESERVER=SERVER, SI_HTTP_PORT="8080", HOSTNAME="node1", DOMAINNAME="lab.example",
               DEVICE="eth0", IPADDR=CLIENT, NETMASK="255.255.255.0", GATEWAY=SERVER, MAC="52:54:00:12:34:56",
               DISK0=loops[0], DISK1=loops[1], TARGET=str(tmp / "a"), SI_POST_INSTALL="none",
               SI_TMP=str(tmp / "si-tmp"))
    started = time.time()
    r = lab.run(cli, "busybox", "sh", str(master), env=env, check=False, timeout=180)
    seconds = time.time() - started
    assert r.returncode == 0, f"script failed:\n{r.stdout}\n{r.stderr}\n{calls.read_text() if calls.exists() else ''}"
    print(f"install took {seconds:.1f} s")

    # Partitioned: the MBR disk grew its last logical partition (and container), the GPT one shrank.
    dump0 = subprocess.run(["sfdisk", "--dump", loops[0]], capture_output=True, text=True, check=True).stdout
    dump1 = subprocess.run(["sfdisk", "--dump", loops[1]], capture_output=True, text=True, check=True).stdout
    assert "label: dos" in dump0 and "label: gpt" in dump1
    parts0 = {l.split(" :")[0]: l for l in dump0.splitlines() if " : " in l}
    assert sorted(parts0) == [f"{loops[0]}p{n}" for n in (1, 2, 3, 5, 6)]
    assert "bootable" in parts0[f"{loops[0]}p1"] and "type=82" in parts0[f"{loops[0]}p2"]
    last_end = max(int(l.split("start=")[1].split(",")[0]) + int(l.split("size=")[1].split(",")[0])
                   for l in parts0.values())
    assert last_end > 370 * 2048  # grown to (nearly) the end of the 384 MiB disk
    assert 'name="srv"' in dump1

    # Formatted: types, the image's UUID for /srv and its label for /boot.
    p = lambda d, n: f"{loops[d]}p{n}"
    info = {dev: blkid(dev) for dev in (p(0, 1), p(0, 2), p(0, 5), p(0, 6), p(1, 1))}
    assert [info[d].get("TYPE") for d in (p(0, 1), p(0, 2), p(0, 5), p(0, 6), p(1, 1))] == \
        ["ext2", "swap", "ext4", "ext4", "xfs"]
    assert info[p(1, 1)]["UUID"] == XFS_UUID and info[p(0, 1)].get("LABEL") == "boot"
    features = subprocess.run(["dumpe2fs", "-h", p(0, 6)], capture_output=True, text=True).stdout
    assert "extent" in features and "metadata_csum" not in features  # the image's mke2fs.conf

    # Filled: mount as the script did and compare with the image (content, modes, owners, links, xattrs).
    mnt = tmp / "check"
    for dev, mp in ((p(0, 6), ""), (p(0, 1), "boot"), (p(0, 5), "var"), (p(1, 1), "srv")):
        (mnt / mp).mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-o", "ro", dev, str(mnt / mp)], check=True)
        mounts.append(mnt / mp)
    diff = subprocess.run(["rsync", "-naHAXc", "--numeric-ids", "--delete", "--itemize-changes",
                           "--exclude=lost+found", f"{image}/", f"{mnt}/"], capture_output=True, text=True)
    changed = {line.split(" ", 1)[1].strip() for line in diff.stdout.splitlines() if line.strip()}
    tools = {"usr/local/", "usr/local/sbin/", "usr/local/lib/", "usr/local/lib/systemimager/",
             "usr/local/sbin/updateclient", "usr/local/sbin/prepareclient",
             "usr/local/lib/systemimager/siclient.py"}       # the client tools the install adds
    assert changed <= CHANGED | tools | {"etc/", "etc/network/", "etc/systemd/network/", "boot/", "boot/grub/",
                                         "srv/", "usr/"}, diff.stdout   # srv/: the mount point the image lacks
    # updateclient on the PATH of the installed system (the manual's Example 13 fetched it).
    assert os.readlink(mnt / "usr/local/sbin/updateclient") == "../lib/systemimager/siclient.py"
    assert (mnt / "usr/local/lib/systemimager/siclient.py").read_bytes() == SICLIENT.read_bytes()
    assert os.access(mnt / "usr/local/lib/systemimager/siclient.py", os.X_OK)
    assert os.getxattr(mnt / "usr/bin/tool", "user.si-test") == b"kept"
    assert os.stat(mnt / "usr/share/big.bin").st_ino == os.stat(mnt / "usr/share/big-hardlink.bin").st_ino
    assert os.stat(mnt / "home/user/notes").st_uid == 1234

    # fstab by UUID, each matching the file system blkid sees.
    fstab = [l.split() for l in (mnt / "etc/fstab").read_text().splitlines() if l and not l.startswith("#")]
    by_mp = {f[1]: f[0] for f in fstab}
    assert by_mp["/"] == f"UUID={info[p(0, 6)]['UUID']}" and by_mp["/boot"] == f"UUID={info[p(0, 1)]['UUID']}"
    assert by_mp["/var"] == f"UUID={info[p(0, 5)]['UUID']}" and by_mp["/srv"] == f"UUID={XFS_UUID}"
    assert by_mp["none"] == f"UUID={info[p(0, 2)]['UUID']}" and by_mp["/proc"] == "proc"

    # Hostname and network, ip method static in the image's two styles.
    assert (mnt / "etc/hostname").read_text() == "node1\n"
    assert f"{CLIENT}\tnode1.lab.example node1" in (mnt / "etc/hosts").read_text()
    assert "golden" not in (mnt / "etc/hosts").read_text()
    interfaces = (mnt / "etc/network/interfaces").read_text()
    assert "iface ens3 inet static" in interfaces and f"address {CLIENT}" in interfaces
    networkd = (mnt / "etc/systemd/network/10-systemimager.network").read_text()
    assert "MACAddress=52:54:00:12:34:56" in networkd and f"Address={CLIENT}/24" in networkd

    # Boot loader: GRUB's tools ran inside the image, for BIOS on the MBR disk, with /dev,
    # /proc and /sys bound; then update-grub wrote grub.cfg.
    log = Path(f"{calls}.log").read_text()
    assert f"boot loader: GRUB installed for BIOS on {loops[0]}" in log
    assert (mnt / "boot/grub/si-test-grub-install.log").read_text().split("\n") == [
        f"args: --target=i386-pc --recheck {loops[0]}", "proc", "sys", "dev", ""]
    assert (mnt / "boot/grub/i386-pc/normal.mod").exists()
    assert (mnt / "boot/grub/grub.cfg").read_text() == "# from update-grub\n"

    # Progress: phases in order, rsync percentages rising, then done 100.
    progress = [l.split()[1:] for l in calls.read_text().splitlines() if l.startswith("si-progress")]
    phases = [x[0] for x in progress]
    assert phases[0] == "partition" and phases[-1] == "done" and progress[-1][1] == "100"
    assert calls.read_text().splitlines()[-1] == "si-done installed gold"  # the initrd's command, last
    order = [ph for i, ph in enumerate(phases) if i == 0 or phases[i - 1] != ph]
    assert order == ["partition", "mkfs", "mount", "rsync", "configure", "bootloader", "done"]
    rsync_pct = [int(x[1]) for x in progress if x[0] == "rsync"]
    assert rsync_pct == sorted(rsync_pct) and rsync_pct[0] == 15 and rsync_pct[-1] == 90
    assert any(len(x) == 3 and int(x[2]) > 8 * MIB for x in progress if x[0] == "rsync")

    # The appliance recorded the install: succeeded, 100 %, host flipped to local boot, log file.
    inst = store.current_install("node1")
    assert (inst.state, inst.percent, inst.phase) == ("succeeded", 100, "done")
    assert inst.bytes > 8 * MIB and inst.finished is not None
    assert [i.id for i in store.installs()] == [inst.id]  # one record for the whole run
    assert store.host("node1").netboot == "local"
    assert "installing image gold on node1" in (cfg.log_dir / "node1.log").read_text()

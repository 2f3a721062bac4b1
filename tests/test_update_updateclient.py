"""updateclient against the real rsync daemon: versions, exclusions, dry run, rollback, --autoinstall."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.client import siclient
from appliance.lab.loopdev import loop_device, partition

CLIENT = [sys.executable, siclient.__file__]


def tree_digest(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """path -> content hash (files), link target (symlinks) or 'dir'."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if rel.startswith(skip):
                continue
            if path.is_symlink():
                out[rel] = "-> " + os.readlink(path)
            elif path.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return out


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def served(lab, tmp_path):
    """An image server namespace running the real rsync daemon with two versions."""
    v1, v2 = tmp_path / "images" / "v1", tmp_path / "images" / "v2"
    for root in (v1, v2):
        write(root, "etc/os-release", "NAME=golden\n")
        write(root, "etc/hostname", "golden\n")
        write(root, "etc/fstab", "UUID=golden / ext4 defaults 0 1\n")
        write(root, "etc/ssh/ssh_host_ed25519_key", "golden host key\n")
        write(root, "home/user/notes", "golden home\n")
        write(root, "var/log/messages", "golden log\n")
    write(v1, "usr/bin/tool", "tool v1\n")
    write(v1, "usr/share/old", "removed in v2\n")
    write(v2, "usr/bin/tool", "tool version 2\n")
    write(v2, "usr/share/new", "added in v2\n")
    os.symlink("tool", v2 / "usr/bin/tool-link")
    conf = tmp_path / "rsyncd.conf"
    conf.write_text(f"pid file = {tmp_path}/rsyncd.pid\nuse chroot = no\nnumeric ids = yes\n"
                    f"[web]\npath = {v2}\nread only = yes\nuid = root\ngid = root\n"
                    f"[web@1]\npath = {v1}\nread only = yes\nuid = root\ngid = root\n"
                    f"[web@2]\npath = {v2}\nread only = yes\nuid = root\ngid = root\n")
    server = lab.namespace("srv")
    client = lab.namespace("cli")
    lab.veth(client, "eth0", server, "eth0", "10.77.0.11/24", "10.77.0.1/24")
    lab.popen(server, "rsync", "--daemon", "--no-detach", f"--config={conf}", "--address=10.77.0.1")
    deadline = time.time() + 10
    while lab.run(client, "rsync", "rsync://10.77.0.1/", check=False).returncode != 0:
        assert time.time() < deadline, "rsync daemon did not come up"
        time.sleep(0.1)
    return client, v1, v2


def updateclient(lab, ns, root, *args, check=True):
    out = lab.run(ns, *CLIENT, "updateclient", "--server", "10.77.0.1", "--root", str(root),
                  "--no-report", *args, check=False, timeout=120)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


IDENTITY = {"etc/hostname": "node7\n", "etc/fstab": "UUID=node7 / ext4 defaults 0 1\n",
            "etc/ssh/ssh_host_ed25519_key": "node7 host key\n", "home/user/notes": "node7 home\n",
            "var/log/messages": "node7 log\n", "etc/network/interfaces": "iface eth0 inet static\n"}


def installed_client(tmp_path, v1) -> Path:
    """A client installed from v1, then lived in: its identity and data differ from the image."""
    root = tmp_path / "client"
    subprocess.run(["cp", "-a", f"{v1}/.", str(root)], check=True)
    for rel, text in IDENTITY.items():
        write(root, rel, text)
    return root


def test_update_to_v2_keeps_identity_then_rollback(lab, tmp_path, served):
    ns, v1, v2 = served
    root = installed_client(tmp_path, v1)
    before = tree_digest(root)

    dry = updateclient(lab, ns, root, "--image", "web:2", "--dry-run")
    assert "usr/share/new" in dry.stdout
    assert any("deleting" in l and "usr/share/old" in l for l in dry.stdout.splitlines()), dry.stdout
    assert tree_digest(root, skip=("etc/systemimager",)) == {k: v for k, v in before.items()
                                                             if not k.startswith("etc/systemimager")}, \
        "a dry run changed files"

    updateclient(lab, ns, root, "--image", "web:2")
    assert (root / "usr/bin/tool").read_text() == "tool version 2\n"
    assert (root / "usr/share/new").read_text() == "added in v2\n"
    assert not (root / "usr/share/old").exists(), "a file gone from the image stayed"
    assert os.readlink(root / "usr/bin/tool-link") == "tool"
    for rel, text in IDENTITY.items():
        assert (root / rel).read_text() == text, f"{rel} was overwritten by the update"
    assert (root / "etc/systemimager/updateclient.local.exclude").exists()

    updateclient(lab, ns, root, "--image", "web:1")  # rollback = update to the previous version
    skip = ("etc/systemimager",)
    assert tree_digest(root, skip) == {k: v for k, v in before.items() if not k.startswith(skip)}


def test_local_exclude_file_is_honoured(lab, tmp_path, served):
    ns, v1, v2 = served
    root = installed_client(tmp_path, v1)
    write(root, "etc/systemimager/updateclient.local.exclude", "/usr/bin/tool\n")
    updateclient(lab, ns, root, "--image", "web")
    assert (root / "usr/bin/tool").read_text() == "tool v1\n", "an excluded path was updated"
    assert (root / "usr/share/new").exists()


def test_bad_image_and_unreachable_server(lab, tmp_path, served):
    ns, v1, _ = served
    root = installed_client(tmp_path, v1)
    out = updateclient(lab, ns, root, "--image", "../etc", check=False)
    assert out.returncode == 1 and "is not NAME or NAME:VERSION" in out.stdout
    out = updateclient(lab, ns, root, "--image", "nosuch", check=False)
    assert out.returncode == 1 and "failed with exit status" in out.stdout
    assert (root / "usr/bin/tool").read_text() == "tool v1\n"


@pytest.fixture
def loop_disk(tmp_path):
    """A disk image with one ext4 partition holding an installed system with GRUB files."""
    for tool, package in (("sfdisk", "fdisk"), ("mkfs.ext4", "e2fsprogs"), ("grub-editenv", "grub-common")):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            pytest.fail(f"{tool} not found: install the Debian package {package}")
    image = tmp_path / "disk.img"
    subprocess.run(["truncate", "-s", "64M", str(image)], check=True)
    subprocess.run(["sfdisk", "-q", str(image)], input="label: dos\n,,L,*\n", text=True, check=True)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with loop_device(image) as dev:
        subprocess.run(["mkfs.ext4", "-q", partition(dev, 1)], check=True)
        subprocess.run(["mount", partition(dev, 1), str(mnt)], check=True)
        try:
            (mnt / "boot/grub").mkdir(parents=True)
            (mnt / "boot/grub/grub.cfg").write_text("set default=0\nmenuentry 'Debian' {\n  linux /vmlinuz\n}\n")
            yield mnt
        finally:
            subprocess.run(["umount", str(mnt)], check=False)


def test_autoinstall_sets_up_a_one_time_redeploy(lab, tmp_path, loop_disk):
    # The appliance side: boot files over HTTP from the server namespace.
    boot = tmp_path / "boot"
    (boot / "systemimager").mkdir(parents=True)
    (boot / "systemimager/kernel").write_bytes(b"K" * 1000)
    (boot / "systemimager/initrd.img").write_bytes(b"I" * 2000)
    server = lab.namespace("srv")
    client = lab.namespace("cli")
    lab.veth(client, "eth0", server, "eth0", "10.77.0.11/24", "10.77.0.1/24")
    lab.run(client, "ip", "route", "add", "default", "via", "10.77.0.1")
    lab.popen(server, sys.executable, "-m", "http.server", "--bind", "10.77.0.1", "8080",
              "--directory", str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while lab.run(client, "curl", "-sf", "http://10.77.0.1:8080/boot/systemimager/kernel", check=False).returncode:
        assert time.time() < deadline, "test HTTP server did not come up"
        time.sleep(0.1)
    out = lab.run(client, *CLIENT, "updateclient", "-a", "-s", "10.77.0.1", "-c", "eth0", "--root",
                  str(loop_disk), "--hostname", "node7", "--yes", check=False, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Retrieving SystemImager kernel" in out.stdout
    assert (loop_disk / "boot/systemimager/kernel").read_bytes() == b"K" * 1000
    assert (loop_disk / "boot/systemimager/initrd.img").read_bytes() == b"I" * 2000
    cfg = dict(line.split("=", 1) for line in (loop_disk / "local.cfg").read_text().splitlines()
               if "=" in line and not line.startswith("#"))
    assert cfg["IPADDR"] == "10.77.0.11" and cfg["NETMASK"] == "255.255.255.0"
    assert cfg["GATEWAY"] == "10.77.0.1" and cfg["DEVICE"] == "eth0"
    assert cfg["HOSTNAME"] == "node7" and cfg["IMAGESERVER"] == "10.77.0.1"
    grub_cfg = (loop_disk / "boot/grub/grub.cfg").read_text()
    assert 'menuentry "SystemImager autoinstall"' in grub_cfg and "linux $si/kernel IMAGESERVER=10.77.0.1" in grub_cfg
    # The installer has no udev, so the NIC is named to it by MAC too.
    mac = lab.run(client, "cat", "/sys/class/net/eth0/address").stdout.strip()
    assert f"BOOTIF=01-{mac.replace(':', '-')}" in grub_cfg
    assert grub_cfg.index("menuentry 'Debian'") < grub_cfg.index("next_entry"), "one-time logic must come last"
    env = subprocess.run(["grub-editenv", str(loop_disk / "boot/grub/grubenv"), "list"],
                         capture_output=True, text=True, check=True).stdout
    assert "next_entry=SystemImager autoinstall" in env


@pytest.mark.parametrize("spelling", [["-c", "eth0"], ["-conf", "eth0"], ["-config", "eth0"],
                                      ["-configure-from", "eth0"], ["--conf=eth0"]])
def test_the_manuals_spellings_of_configure_from(spelling):
    """Example 12: 'updateclient -a -s imageserver -c eth0', and -config as section 9 writes it;
    --config and --configure-from are one option, so a prefix of both is not ambiguous."""
    parser = siclient.build_parser()
    argv = ["updateclient", "-a", "-s", "imageserver", *spelling]
    args = parser.parse_args(siclient.expand_aliases(parser, siclient.normalise_single_dash(argv)))
    assert (args.autoinstall, args.server, args.configure_from) == (True, "imageserver", "eth0")


def test_a_prefix_of_two_options_stays_ambiguous(capsys):
    parser = siclient.build_parser()
    argv = siclient.expand_aliases(parser, ["updateclient", "--server", "x", "--h", "y"])
    assert argv[-2] == "--h"                      # --hostname or --http-port: left for argparse
    with pytest.raises(SystemExit):
        parser.parse_args(argv)
    assert "ambiguous option: --h" in capsys.readouterr().err
    assert siclient.expand_aliases(parser, ["updateclient", "--ex", "f"])[1] == "--exclude-file"

#!/usr/bin/env python3
"""SystemImager golden-client tools: one file, needing only Python 3 and rsync.

Fetch it from the image server (http://SERVER:8080/client/siclient.py) and run
`python3 siclient.py prepareclient --server SERVER`. Installed under the name
of a subcommand (a symlink `prepareclient -> siclient.py`), it runs that one.

prepareclient records this machine's disks and mounted file systems under
/etc/systemimager and starts a temporary rsync daemon that exports / read-only
as module `root`, only to the image server, behind a one-time secret. Its
files live in /run (gone at reboot), so the daemon never comes back after a
reboot. `prepareclient --stop` tears it down at once.

updateclient (on an installed client) brings it to an image version with
rsync deltas, never touching what makes the machine itself (see
DEFAULT_UPDATE_EXCLUDES and /etc/systemimager/updateclient.local.exclude);
`updateclient --autoinstall` sets up a one-time boot into the autoinstall
kernel instead, re-deploying the machine at its next reboot.

Each subcommand is a function registered with @subcommand; add new ones the
same way. Keep this file standard-library only and Python 3.6 compatible.
"""
import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time

VERSION = "0.1.0"
BACKUP_SUFFIX = ".beforesystemimager"
SI_DIR = "etc/systemimager"
RSYNC_USER = "systemimager"
DEFAULT_RUN_DIR = "/run/systemimager-prepareclient"
_SAFE_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:-]{0,252}$")

SUBCOMMANDS = {}


def subcommand(name, help_text):
    """Register `func(args)` as a subcommand; `func.configure(parser)` adds its options."""
    def wrap(func):
        SUBCOMMANDS[name] = (func, help_text)
        return func
    return wrap


class Fail(Exception):
    """A problem to report in one line (exit status 1)."""


def say(text=""):
    print(text, flush=True)


def run(cmd, check=False):
    """Run a tool; returns (status, stdout, stderr) as text. Missing tools give 127."""
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True)
    except FileNotFoundError:
        if check:
            raise Fail("%s not found; install it" % cmd[0])
        return 127, "", "%s not found" % cmd[0]
    if check and proc.returncode != 0:
        raise Fail("%s failed: %s" % (" ".join(cmd), proc.stderr.strip()))
    return proc.returncode, proc.stdout, proc.stderr


def answer(prompt, option):
    """One line from standard input, a terminal or a pipe (the manual's questions can be answered
    by `printf 'y\n' | ...`); the end of the input is a clear error naming the option instead."""
    sys.stdout.write(prompt)
    sys.stdout.flush()
    line = sys.stdin.readline()
    if not line:
        sys.stdout.write("\n")
        raise Fail("no answer to %r (standard input ended): pass %s" % (prompt.strip(), option))
    if not sys.stdin.isatty():
        sys.stdout.write(line if line.endswith("\n") else line + "\n")
    return line.strip()


def confirm(question, assume_yes):
    if assume_yes:
        return True
    while True:
        reply = answer("%s (y/[n]): " % question, "--yes").lower()
        if reply in ("", "n", "no", "y", "yes"):
            return reply in ("y", "yes")
        if not sys.stdin.isatty():
            raise Fail("%r is not an answer to %r (y or n)" % (reply, question))
        say("Please answer y or n.")


def write_file(path, data, mode=0o644, backup=True):
    """Write data to path atomically, telling the user; back up what it replaces."""
    if isinstance(data, str):
        data = data.encode()
    old = None
    if os.path.isfile(path):
        with open(path, "rb") as f:
            old = f.read()
    if old == data:
        say("Unchanged %s" % path)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if old is not None and backup:
        saved = path + BACKUP_SUFFIX
        if not os.path.exists(saved):  # keep the state from before SystemImager
            shutil.copy2(path, saved)
            say("Backed up %s to %s" % (path, saved))
    say("%s %s" % ("Updating" if old is not None else "Creating", path))
    tmp = "%s.tmp-%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


# --- prepareclient ---------------------------------------------------------

def disk_file_name(disk):
    """/dev/cciss/c0d0 -> cciss_c0d0 (the contract's name for a disk's scheme file)."""
    name = disk[len("/dev/"):] if disk.startswith("/dev/") else disk
    return name.replace("/", "_").replace("!", "_")


def list_disks(lsblk_json):
    disks = []
    try:
        devices = json.loads(lsblk_json).get("blockdevices", [])
    except ValueError:
        return disks
    for dev in devices:
        if dev.get("type") == "disk":
            disks.append(dev.get("path") or "/dev/" + dev["name"].replace("!", "/"))
    return disks


BLKID_FIELDS = {"UUID": "uuid", "TYPE": "fstype", "LABEL": "label",
                "PART_ENTRY_UUID": "partuuid", "PART_ENTRY_NAME": "partlabel"}


def complete_with_blkid(tree):
    """Fill what lsblk leaves empty by probing the devices with blkid.

    lsblk takes UUIDs, labels and file system types from udev's database;
    where udev does not run (containers, rescue systems) they come back null,
    and the install could not match fstab's UUID= lines to partitions.
    """
    def visit(dev):
        path = dev.get("path") or "/dev/" + dev.get("name", "")
        if any(dev.get(key) is None for key in BLKID_FIELDS.values()):
            status, out, _ = run(["blkid", "-p", "-o", "export", path])
            if status == 0:
                for line in out.splitlines():
                    key, _, value = line.partition("=")
                    if key in BLKID_FIELDS and dev.get(BLKID_FIELDS[key]) is None:
                        dev[BLKID_FIELDS[key]] = value.lower() if key == "PART_ENTRY_UUID" else value
        for child in dev.get("children", []):
            visit(child)
    for dev in tree.get("blockdevices", []):
        visit(dev)
    return tree


def record_disks(root, chosen):
    schemes = os.path.join(root, SI_DIR, "partitionschemes")
    status, out, err = run(["lsblk", "-J", "-b", "-O"])
    if status == 0:
        try:
            out = json.dumps(complete_with_blkid(json.loads(out)), indent=1) + "\n"
        except ValueError:
            pass
        write_file(os.path.join(schemes, "disks.json"), out)
    else:
        say("Warning: lsblk failed (%s); disks.json not written" % err.strip())
        out = "{}"
    disks = chosen or list_disks(out)
    if not disks:
        say("Note: no disks found to record")
    for disk in disks:
        status, dump, err = run(["sfdisk", "--dump", disk])
        if status == 127:
            raise Fail("sfdisk not found: install it (Debian package fdisk, util-linux elsewhere)")
        if status != 0:
            say("Note: %s has no partition table sfdisk can read (%s); skipped" % (disk, err.strip()))
            continue
        write_file(os.path.join(schemes, disk_file_name(disk) + ".sfdisk"), dump)


def mounts_under(root, mounts_text):
    """/proc/mounts as seen from root: only mounts inside it, with paths made relative."""
    root = os.path.realpath(root)
    if root == "/":
        return mounts_text
    lines = []
    for line in mounts_text.splitlines():
        parts = line.split(" ")
        if len(parts) < 3:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[1])
        if point == root or point.startswith(root + "/"):
            inner = point[len(root):] or "/"
            parts[1] = inner.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011")
            lines.append(" ".join(parts))
    return "".join(l + "\n" for l in lines)


def daemon_files(run_dir):
    names = ("conf", "secrets", "pid", "log", "lock", "secret")
    files = {n: os.path.join(run_dir, "rsyncd." + n) for n in names}
    files["secret"] = os.path.join(run_dir, "secret")
    return files


def daemon_pid(run_dir):
    files = daemon_files(run_dir)
    try:
        with open(files["pid"]) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmdline = f.read().split(b"\0")
    except OSError:
        return None
    # Only ever signal our own daemon, never a reused pid.
    if any(arg.startswith(b"--config=") and arg.endswith(files["conf"].encode()) for arg in cmdline):
        return pid
    return None


def listening(pid, port):
    for table in ("tcp", "tcp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, table)) as f:
                rows = f.readlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 3 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def stop_daemon(run_dir, quiet=False):
    pid = daemon_pid(run_dir)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not os.path.exists("/proc/%d" % pid):
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
        say("Stopped the temporary rsync daemon (pid %d)" % pid)
    elif not quiet:
        say("No temporary rsync daemon was running")
    for name, path in daemon_files(run_dir).items():
        if name != "log" and os.path.exists(path):
            os.unlink(path)
            if not quiet:
                say("Removed %s" % path)


DAEMON_CONF = """\
# Temporary rsync daemon written by prepareclient; removed by 'prepareclient --stop'.
# It lives under {run_dir} so nothing starts it again after a reboot.
pid file = {pid}
port = {port}
{address_line}log file = {log}
use chroot = yes

[root]
    path = {root}
    comment = this golden client's system, for the image server only
    read only = yes
    list = no
    uid = root
    gid = root
    numeric ids = yes
    hosts allow = {server}
    hosts deny = *
    auth users = {user}
    secrets file = {secrets}
    strict modes = yes
    max connections = 4
    lock file = {lock}
"""


SECRET_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def new_secret():
    """32 letters and digits (190 bits). No '-': a secret starting with one is taken
    for an option when pasted after `getimage --secret` (it failed a CI run)."""
    return "".join(secrets.choice(SECRET_ALPHABET) for _ in range(32))


def start_daemon(root, server, port, address, run_dir):
    if shutil.which("rsync") is None:
        raise Fail("rsync not found: install it (Debian package rsync)")
    os.makedirs(run_dir, mode=0o700, exist_ok=True)
    os.chmod(run_dir, 0o700)
    files = daemon_files(run_dir)
    stop_daemon(run_dir, quiet=True)
    secret = new_secret()
    write_file(files["secrets"], "%s:%s\n" % (RSYNC_USER, secret), mode=0o600, backup=False)
    write_file(files["secret"], secret + "\n", mode=0o600, backup=False)
    write_file(files["conf"], DAEMON_CONF.format(
        run_dir=run_dir, pid=files["pid"], port=port, log=files["log"], root=root, server=server,
        user=RSYNC_USER, secrets=files["secrets"], lock=files["lock"],
        address_line="address = %s\n" % address if address else ""), mode=0o600, backup=False)
    say("Starting the temporary rsync daemon ...")
    status, _out, err = run(["rsync", "--daemon", "--config=" + files["conf"]])
    if status != 0:
        raise Fail("rsync --daemon failed: %s" % err.strip())
    deadline = time.time() + 10
    while time.time() < deadline:
        pid = daemon_pid(run_dir)
        if pid is not None and listening(pid, port):
            return secret, pid
        time.sleep(0.05)
    tail = ""
    try:
        with open(files["log"]) as f:
            tail = " ".join(f.read().strip().splitlines()[-2:])
    except OSError:
        pass
    stop_daemon(run_dir, quiet=True)
    raise Fail("the rsync daemon did not start listening on port %d: %s" % (port, tail or "see " + files["log"]))


def my_address_towards(server):
    """The address the image server will see us with (for the hint we print)."""
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.connect((server, 9))
            return s.getsockname()[0]
        finally:
            s.close()
    except (OSError, UnicodeError):
        return socket.gethostname()


def prepareclient_configure(p):
    p.add_argument("--server", help="the image server's address: the only host allowed to pull")
    p.add_argument("--root", default="/", help="export this directory instead of / (tests, chroots)")
    p.add_argument("--port", type=int, default=873, help="port of the temporary rsync daemon")
    p.add_argument("--address", help="listen only on this local address (default: all)")
    p.add_argument("--disk", action="append", default=[],
                   help="record only this disk's partition scheme (repeat; default: every disk)")
    p.add_argument("--run-dir", default=DEFAULT_RUN_DIR,
                   help="where the daemon's temporary files go (default: %(default)s)")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--stop", action="store_true", help="stop the temporary rsync daemon and remove its files")


@subcommand("prepareclient", "prepare this golden client for 'si getimage' on the image server")
def prepareclient(args):
    if args.stop:
        stop_daemon(args.run_dir)
        return 0
    root = os.path.realpath(args.root)
    if not os.path.isdir(root):
        raise Fail("--root %s is not a directory" % args.root)
    if re.search(r"[\n\r\0\[\]]", root + args.run_dir):
        raise Fail("--root and --run-dir must not contain newlines or brackets")
    if not 1 <= args.port <= 65535:
        raise Fail("--port %d is outside 1-65535" % args.port)
    if not args.server:
        if args.yes:
            raise Fail("--server: name the image server (only it may pull this system)")
        args.server = answer("Image server's IP address: ", "--server")
    if not _SAFE_HOST.match(args.server):
        raise Fail("--server %r is not a host name or IP address" % args.server)
    si_dir = os.path.join(root, SI_DIR)
    say("""
Welcome to the SystemImager prepareclient command. This command
may modify the following files to prepare your client for having its
image retrieved by the image server. It will also create the
{si} directory and fill it with information about your
golden client, such as the disk partitioning scheme(s).

{si}/partitionschemes/<disk>.sfdisk  -- sfdisk --dump of each disk
{si}/partitionschemes/disks.json     -- lsblk -J -b -O (sizes, labels, UUIDs, RAID/LVM)
{si}/mounted_filesystems             -- copy of /proc/mounts
{run}/rsyncd.conf  -- a temporary rsync daemon exporting {root} read-only
                      as [root], to {server} only, with a one-time secret{gone}

All modified files will be backed up with the {suffix}
extension.
""".format(si=si_dir, run=args.run_dir, root=root, server=args.server, suffix=BACKUP_SUFFIX,
           gone="\n                      (under /run: it is gone after a reboot)"
           if os.path.realpath(args.run_dir).startswith("/run/") else ""))
    if not confirm("Prepare client for SystemImager?", args.yes):
        say("Nothing done.")
        return 1
    say("Ok. Preparing client for SystemImager...")
    record_disks(root, args.disk)
    with open("/proc/mounts") as f:
        write_file(os.path.join(si_dir, "mounted_filesystems"), mounts_under(root, f.read()))
    secret, pid = start_daemon(root, args.server, args.port, args.address, args.run_dir)
    me = args.address or my_address_towards(args.server)
    port = "" if args.port == 873 else " --port %d" % args.port
    say("""
Started the temporary rsync daemon (pid {pid}, port {port_n}); only {server} may connect.
One-time secret: {secret}   (also in {secret_file}, readable by root only)

This client is ready to have its image retrieved. On the image server run:
  si getimage --golden-client {me} --image IMAGE_NAME --secret {secret}{port}
When it is done, run 'prepareclient --stop{run_dir}' here{or_reboot}.""".format(
        pid=pid, port_n=args.port, server=args.server, secret=secret,
        secret_file=daemon_files(args.run_dir)["secret"], me=me, port=port,
        run_dir="" if args.run_dir == DEFAULT_RUN_DIR else " --run-dir %s" % args.run_dir,
        or_reboot=" (or reboot)" if os.path.realpath(args.run_dir).startswith("/run/") else ""))
    return 0


prepareclient.configure = prepareclient_configure


# --- updateclient ------------------------------------------------------------

UPDATE_EXCLUDE_FILE = "etc/systemimager/updateclient.local.exclude"
LEGACY_EXCLUDE_FILE = "etc/systemimager.exclude"   # the 2.0 manual's name, still honoured
# What an update must never touch: data, logs, and what makes this machine itself
# (its name, disks, network, host keys, boot loader configuration).
DEFAULT_UPDATE_EXCLUDES = """\
# Paths updateclient never changes on this machine (rsync exclude patterns,
# anchored at /). Add your own below; lines starting with # are comments.
/home/
/root/
/tmp/
/var/tmp/
/var/log/
/var/cache/
/var/lib/dhcp/
/lost+found/
/proc/
/sys/
/dev/
/run/
/mnt/
/media/
/etc/hostname
/etc/hosts
/etc/fstab
/etc/mtab
/etc/machine-id
/var/lib/dbus/machine-id
/etc/network/interfaces
/etc/network/interfaces.d/
/etc/systemd/network/
/etc/NetworkManager/system-connections/
/etc/resolv.conf
/etc/ssh/ssh_host_*
/etc/systemimager/
/etc/systemimager.exclude
/boot/grub/grub.cfg
/boot/grub/grubenv
/boot/grub/custom.cfg
/boot/efi/
/boot/systemimager/
/usr/local/lib/systemimager/
/usr/local/sbin/updateclient
/usr/local/sbin/prepareclient
/local.cfg
"""
_IMAGE_SPEC = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.+-]{0,63})(?::(\d+))?$")
_PROGRESS2 = re.compile(r"^\s*([\d,]+)\s+(\d+)%")


def rsync_module(image):
    """'web_v1' -> 'web_v1' (latest version), 'web_v1:3' -> 'web_v1@3'."""
    m = _IMAGE_SPEC.match(image)
    if not m or ".." in image:
        raise Fail("--image %r is not NAME or NAME:VERSION" % image)
    return m.group(1) if m.group(2) is None else "%s@%s" % (m.group(1), m.group(2))


def exclude_file(root):
    """The exclusion list to use, written with the defaults the first time."""
    path = os.path.join(root, UPDATE_EXCLUDE_FILE)
    if not os.path.exists(path):
        write_file(path, DEFAULT_UPDATE_EXCLUDES, backup=False)
    return path


def report(args, payload):
    """Tell the appliance how the update goes; never fail the update over it."""
    if not args.report:
        return
    import urllib.request
    url = "http://%s:%d/api/installs/%s" % (args.server, args.http_port, args.hostname)
    body = json.dumps(dict(payload, kind="update")).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=5).close()
    except Exception as exc:  # the appliance may be down or refuse us; the update goes on
        if not getattr(args, "_report_warned", False):
            say("(progress not reported to %s: %s)" % (url, exc))
            args._report_warned = True


def updateclient_configure(p):
    p.add_argument("--server", "-s", required=True, help="the image server")
    p.add_argument("--image", "-i", help="NAME or NAME:VERSION to bring this machine to")
    p.add_argument("--root", default="/", help="update this directory instead of / (tests, chroots)")
    p.add_argument("--dry-run", "-n", action="store_true", help="list what would change; change nothing")
    p.add_argument("--exclude-file", action="append", default=[],
                   help="more rsync exclude patterns (besides %s)" % UPDATE_EXCLUDE_FILE)
    p.add_argument("--port", type=int, default=873, help="the image server's rsync port")
    p.add_argument("--http-port", type=int, default=8080, help="the appliance's HTTP port (progress)")
    p.add_argument("--hostname", default=socket.gethostname().split(".")[0],
                   help="this machine's name on the appliance (default: its hostname)")
    p.add_argument("--no-report", dest="report", action="store_false",
                   help="do not report progress to the appliance")
    p.add_argument("--autoinstall", "-a", action="store_true",
                   help="do not update: set up the next reboot to re-deploy this machine")
    p.add_argument("--configure-from", "--config", "-c", dest="configure_from", metavar="IFACE",
                   help="with --autoinstall: write local.cfg from this interface's live settings")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")


@subcommand("updateclient", "bring this machine to an image version (or re-deploy it with --autoinstall)")
def updateclient(args):
    if not _SAFE_HOST.match(args.server):
        raise Fail("--server %r is not a host name or IP address" % args.server)
    root = os.path.realpath(args.root)
    if args.autoinstall:
        return autoinstall_next_boot(args, root)
    if not args.image:
        raise Fail("--image: name the image (NAME or NAME:VERSION) to update to")
    module = rsync_module(args.image)
    excludes = [exclude_file(root)]
    legacy = os.path.join(root, LEGACY_EXCLUDE_FILE)
    if os.path.exists(legacy):
        excludes.append(legacy)
    for extra in args.exclude_file:
        if not os.path.isfile(extra):
            raise Fail("--exclude-file %s does not exist" % extra)
        excludes.append(extra)
    cmd = ["rsync", "-aHAX", "--numeric-ids", "--delete", "--port", str(args.port)]
    for path in excludes:
        cmd.append("--exclude-from=" + path)
    if args.dry_run:
        cmd += ["--dry-run", "--itemize-changes", "--info=del1", "--out-format=%i %n%L"]
    else:
        cmd += ["--info=progress2"]
    cmd += ["rsync://%s/%s/" % (args.server, module), root.rstrip("/") + "/"]
    say("%s %s from %s (module %s) into %s" % ("Checking" if args.dry_run else "Updating to",
                                              args.image, args.server, module, root))
    if not args.dry_run:
        report(args, {"phase": "start", "state": "running", "log": "updateclient %s\n" % args.image})
    status = _run_rsync(cmd, args)
    if status != 0:
        if not args.dry_run:
            report(args, {"state": "failed", "log": "rsync exit %d\n" % status})
        raise Fail("rsync from %s::%s failed with exit status %d" % (args.server, module, status))
    if args.dry_run:
        say("Dry run: nothing was changed.")
    else:
        report(args, {"phase": "done", "percent": 100, "state": "succeeded",
                      "log": "updated to %s\n" % args.image})
        say("Done: this machine now matches %s." % args.image)
    return 0


updateclient.configure = updateclient_configure


def _run_rsync(cmd, args):
    """Run rsync, showing its progress (and reporting it every few seconds)."""
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except FileNotFoundError:
        raise Fail("rsync not found; install it")
    last_report = last_shown = 0.0
    progress = b""
    pending = b""
    fd = proc.stdout.fileno()
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        # progress2 rewrites one line with \r; everything else ends in \n
        lines = (pending + chunk).replace(b"\r", b"\n").split(b"\n")
        pending = lines.pop()
        for raw in lines:
            if not args.dry_run and _PROGRESS2.match(raw.decode("ascii", "replace")):
                progress = raw  # rsync rewrites this line per file: show it a few times a second
                continue
            if raw.strip():
                say(raw.decode("utf-8", "replace"))
        now = time.time()
        if progress and now - last_shown > 0.25:
            last_shown = now
            line = progress.decode("ascii", "replace")
            sys.stdout.write("\r" + line.strip()[:78])
            sys.stdout.flush()
            if now - last_report > 2:
                last_report = now
                m = _PROGRESS2.match(line)
                report(args, {"phase": "rsync", "percent": int(m.group(2)),
                              "bytes": int(m.group(1).replace(",", ""))})
    if pending.strip():
        say(pending.decode("utf-8", "replace"))
    if progress:  # the final figures
        sys.stdout.write("\r" + progress.decode("ascii", "replace").strip()[:78])
    if not args.dry_run:
        say("")
    return proc.wait()


# --- updateclient --autoinstall ----------------------------------------------

def live_network(iface):
    """IPADDR, NETMASK, GATEWAY of an interface as the kernel has them now."""
    status, out, err = run(["ip", "-j", "-4", "addr", "show", "dev", iface])
    if status != 0:
        raise Fail("--configure-from %s: %s" % (iface, (err or "no such interface").strip()))
    addrs = [a for link in json.loads(out or "[]") for a in link.get("addr_info", [])
             if a.get("family") == "inet"]
    if not addrs:
        raise Fail("--configure-from %s: the interface has no IPv4 address" % iface)
    prefix = int(addrs[0]["prefixlen"])
    mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF if prefix else 0
    netmask = ".".join(str((mask >> s) & 255) for s in (24, 16, 8, 0))
    gateway = ""
    status, out, _ = run(["ip", "-j", "-4", "route", "show", "default", "dev", iface])
    if status == 0:
        routes = json.loads(out or "[]")
        gateway = routes[0].get("gateway", "") if routes else ""
    return {"DEVICE": iface, "IPADDR": addrs[0]["local"], "NETMASK": netmask, "GATEWAY": gateway}


def _read_first_line(path):
    try:
        with open(path) as f:
            return f.readline().strip()
    except OSError:
        return ""


def _fetch(url, dest):
    import urllib.request
    tmp = dest + ".partial"
    try:
        with urllib.request.urlopen(url, timeout=30) as resp, open(tmp, "wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
    except Exception as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise Fail("cannot fetch %s: %s" % (url, exc))
    os.replace(tmp, dest)


GRUB_ENTRY = """\
# Added by 'updateclient --autoinstall': boots the SystemImager autoinstall
# kernel once (grub-reboot), re-deploying this machine.
menuentry "SystemImager autoinstall" {
    insmod part_msdos
    insmod part_gpt
    insmod ext2
    if search --no-floppy --file --set=root /boot/systemimager/kernel; then
        set si=/boot/systemimager
    else
        search --no-floppy --file --set=root /systemimager/kernel
        set si=/systemimager
    fi
    linux $si/kernel %(cmdline)s
    initrd $si/initrd.img
}
"""


GRUB_ONCE = """\
# Added by 'updateclient --autoinstall': honour grub-reboot's one-time entry.
if [ -s $prefix/grubenv ]; then load_env; fi
if [ "${next_entry}" ]; then
    set default="${next_entry}"
    set next_entry=
    save_env next_entry
fi
"""


def autoinstall_next_boot(args, root):
    """The manual's Examples 12-14: re-deploy this machine at its next reboot."""
    boot_dir = os.path.join(root, "boot", "systemimager")
    say("Setting up %s to re-deploy itself from %s at its next reboot." % (root, args.server))
    if not confirm("Continue?", args.yes):
        say("Nothing done.")
        return 1
    os.makedirs(boot_dir, exist_ok=True)
    base = "http://%s:%d/boot/systemimager/" % (args.server, args.http_port)
    say("Retrieving SystemImager kernel...")
    _fetch(base + "kernel", os.path.join(boot_dir, "kernel"))
    say("Retrieving SystemImager initial ramdisk...")
    _fetch(base + "initrd.img", os.path.join(boot_dir, "initrd.img"))
    if args.configure_from:
        settings = live_network(args.configure_from)
        fqdn = socket.getfqdn() if root == "/" else args.hostname
        settings.update({"HOSTNAME": args.hostname, "IMAGESERVER": args.server,
                         "SI_HTTP_PORT": str(args.http_port),
                         "DOMAINNAME": fqdn.split(".", 1)[1] if "." in fqdn else ""})
        text = "".join("%s=%s\n" % (k, v) for k, v in sorted(settings.items()) if v != "")
        write_file(os.path.join(root, "local.cfg"), "# written by updateclient --autoinstall\n" + text)
    cmdline = "IMAGESERVER=%s SI_HTTP_PORT=%d" % (args.server, args.http_port)
    if args.configure_from:
        # The installer has no udev: the NIC this system calls ens3 is eth0 there. BOOTIF
        # names it by MAC, which the installer trusts over a DEVICE it does not have.
        mac = _read_first_line("/sys/class/net/%s/address" % args.configure_from)
        if mac:
            cmdline += " BOOTIF=01-%s" % mac.replace(":", "-")
    if root == "/":
        # Where this system's console is, the installer's goes too (a serial console
        # shows the re-deploy's progress).
        cmdline += "".join(" " + arg for arg in _read_first_line("/proc/cmdline").split()
                           if arg.startswith("console="))
    grub_dir = os.path.join(root, "boot", "grub")
    if not os.path.isdir(grub_dir):
        raise Fail("%s not found: this machine does not boot with GRUB; add a boot entry for "
                   "%s/kernel and initrd.img by hand" % (grub_dir, boot_dir))
    say("Adding SystemImager entry in %s/custom.cfg..." % grub_dir)
    write_file(os.path.join(grub_dir, "custom.cfg"), GRUB_ENTRY % {"cmdline": cmdline})
    grub_cfg = os.path.join(grub_dir, "grub.cfg")
    if os.path.exists(grub_cfg):
        with open(grub_cfg) as f:
            cfg_text = f.read()
        if "custom.cfg" not in cfg_text:
            # Not a Debian grub.cfg (which sources custom.cfg and honours next_entry):
            # add the one-time logic and the entry to it directly.
            once = "" if "next_entry" in cfg_text else GRUB_ONCE
            # At the end, so no later 'set default' undoes it.
            write_file(grub_cfg, cfg_text.rstrip("\n") + "\n\n" + GRUB_ENTRY % {"cmdline": cmdline} + once)
    # One-time default: GRUB boots it once, then goes back to the normal entry.
    envfile = os.path.join(grub_dir, "grubenv")
    tool = shutil.which("grub-editenv")
    if tool is None:
        raise Fail("grub-editenv not found; install GRUB's tools (Debian package grub-common)")
    if not os.path.exists(envfile):
        run([tool, envfile, "create"], check=True)
    run([tool, envfile, "set", "next_entry=SystemImager autoinstall"], check=True)
    say("Done: the next reboot runs the SystemImager autoinstall once (grub-reboot).")
    return 0



# --- entry point -------------------------------------------------------------

def build_parser():
    parser = argparse.ArgumentParser(prog="siclient", description="SystemImager golden-client tools")
    parser.add_argument("--version", action="version", version="%(prog)s " + VERSION)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (func, help_text) in sorted(SUBCOMMANDS.items()):
        p = sub.add_parser(name, help=help_text)
        func.configure(p)
        p.set_defaults(func=func)
    return parser


def normalise_single_dash(argv):
    """SystemImager's spelling: '-server X' means '--server X'."""
    return ["-" + a if len(a) > 2 and a[0] == "-" and a[1].isalpha() else a for a in argv]


def expand_aliases(parser, argv):
    """'--conf' names both --configure-from and --config, one option by two names: argparse
    calls that ambiguous, the manual's '-conf eth0' means it. Expand such a prefix to the
    option's first name; a prefix of two different options stays ambiguous."""
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    chosen = sub.choices.get(argv[0]) if sub is not None and argv else None
    if chosen is None:
        return argv
    owner = {s: a for a in chosen._actions for s in a.option_strings if s.startswith("--")}
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        if name.startswith("--") and name not in owner:
            matches = [s for s in owner if s.startswith(name)]
            if matches and len(set(id(owner[s]) for s in matches)) == 1:
                arg = next(s for s in owner[matches[0]].option_strings if s.startswith("--")) + eq + value
        out.append(arg)
    return out


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    invoked_as = os.path.basename(sys.argv[0])
    if invoked_as in SUBCOMMANDS:  # a symlink named after a subcommand
        argv = [invoked_as] + argv
    parser = build_parser()
    args = parser.parse_args(expand_aliases(parser, normalise_single_dash(argv)))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if os.geteuid() != 0:
        say("%s: must be run as root" % args.command)
        return 1
    try:
        return args.func(args) or 0
    except Fail as exc:
        say("%s: %s" % (args.command, exc))
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

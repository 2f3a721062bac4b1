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


def confirm(question, assume_yes):
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        raise Fail("not running interactively: pass --yes to go ahead without the question")
    answer = input("%s (y/[n]): " % question).strip().lower()
    return answer in ("y", "yes")


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


def record_disks(root, chosen):
    schemes = os.path.join(root, SI_DIR, "partitionschemes")
    status, out, err = run(["lsblk", "-J", "-b", "-O"])
    if status == 0:
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


def start_daemon(root, server, port, address, run_dir):
    if shutil.which("rsync") is None:
        raise Fail("rsync not found: install it (Debian package rsync)")
    os.makedirs(run_dir, mode=0o700, exist_ok=True)
    os.chmod(run_dir, 0o700)
    files = daemon_files(run_dir)
    stop_daemon(run_dir, quiet=True)
    secret = secrets.token_urlsafe(24)
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
        if args.yes or not sys.stdin.isatty():
            raise Fail("--server: name the image server (only it may pull this system)")
        args.server = input("Image server's IP address: ").strip()
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
                      as [root], to {server} only, with a one-time secret
                      (under /run: it is gone after a reboot)

All modified files will be backed up with the {suffix}
extension.
""".format(si=si_dir, run=args.run_dir, root=root, server=args.server, suffix=BACKUP_SUFFIX))
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
When it is done, run 'prepareclient --stop' here (or reboot).""".format(
        pid=pid, port_n=args.port, server=args.server, secret=secret,
        secret_file=daemon_files(args.run_dir)["secret"], me=me, port=port))
    return 0


prepareclient.configure = prepareclient_configure


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


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    invoked_as = os.path.basename(sys.argv[0])
    if invoked_as in SUBCOMMANDS:  # a symlink named after a subcommand
        argv = [invoked_as] + argv
    args = build_parser().parse_args(normalise_single_dash(argv))
    if not getattr(args, "func", None):
        build_parser().print_help()
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

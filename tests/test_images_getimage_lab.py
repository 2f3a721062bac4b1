"""getimage end to end: a golden client in its own namespace, the appliance in another.

The golden client runs the real prepareclient (siclient.py) with --root on a
tree holding devices, symlinks, hard links, a sparse file, xattrs, ACLs and
files of unmapped ids; the appliance pulls it with `si getimage` and serves
it from the managed rsync daemon (`si up`). A third namespace plays a stranger.
The tests run in order and share one lab (module scope) to stay fast.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.lab.netns import Lab, sweep_stale

sys.path.insert(0, str(Path(__file__).parent))
from support.images_tree import UNMAPPED_UID, build_golden_tree, diff, snapshot  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SI = [sys.executable, "-m", "appliance.cli"]
SICLIENT = REPO / "appliance/client/siclient.py"
APPL, GOLD, OTHER, OUTSIDE = "10.91.0.1", "10.91.0.2", "10.91.0.3", "10.92.0.3"
SKIP = ("mnt/scratch/",)  # a tmpfs on the golden client: its contents must not be pulled


def _require():
    if os.geteuid() != 0:
        pytest.fail("needs root (network namespaces, mknod, mount)")
    for tool, pkg in (("rsync", "rsync"), ("setfacl", "acl"), ("sfdisk", "fdisk"), ("losetup", "mount"),
                      ("lsblk", "util-linux")):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: install the Debian package {pkg}")


class Env:
    """The shared lab: namespaces, the golden tree, the appliance config."""

    def __init__(self, lab: Lab, tmp: Path) -> None:
        self.lab, self.tmp = lab, tmp
        self.appl = lab.namespace("img-appl")
        self.gold = lab.namespace("img-gold")
        self.other = lab.namespace("img-other")
        lab.bridge(self.appl, "br0", f"{APPL}/24")
        lab.run(self.appl, "ip", "addr", "add", "10.92.0.1/24", "dev", "br0")
        lab.veth(self.gold, "eth0", self.appl, "vg0", addr_a=f"{GOLD}/24", bridge_b="br0")
        lab.veth(self.other, "eth0", self.appl, "vo0", addr_a=f"{OTHER}/24", bridge_b="br0")
        lab.run(self.other, "ip", "addr", "add", f"{OUTSIDE}/24", "dev", "eth0")
        self.root = tmp / "golden"
        self.state = tmp / "state"
        self.config = tmp / "appliance.toml"
        self.config.write_text(f"""
interface = "br0"
address = "{APPL}"
state_dir = "{self.state}"
log_dir = "{tmp / 'log'}"
[services]
dhcp = false
tftp = false
dns = false
http = false
rsyncd = true
[[subnet]]
network = "10.91.0.0/24"
[rsyncd]
port = 8873
""")
        self.secret = None

    def si(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = self.lab.run(self.appl, *SI, *args, "--config", str(self.config), check=False,
                            timeout=timeout, cwd=REPO)
        if check and proc.returncode != 0:
            raise AssertionError(f"si {' '.join(args)} failed ({proc.returncode}): {proc.stderr}{proc.stdout}")
        return proc

    def getimage(self, image: str, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.si("getimage", "--golden-client", GOLD, "--image", image, "--secret", self.secret,
                       "--yes", "--no-progress", "--port", "1873", *extra, check=check)

    def store(self):
        from appliance.store import Store
        return Store(self.state / "appliance.db")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    _require()
    sweep_stale()
    tmp = tmp_path_factory.mktemp("images-lab")
    loop = None
    with Lab() as lab:
        e = Env(lab, tmp)
        build_golden_tree(e.root)
        # A tmpfs mounted inside the golden tree: prepareclient records it, getimage leaves it out.
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(e.root / "mnt/scratch")], check=True)
        (e.root / "mnt/scratch/do-not-take").write_text("scratch\n")
        # A disk with a partition table for prepareclient to record (a loop device).
        disk = tmp / "disk.img"
        with open(disk, "wb") as f:
            f.truncate(32 * 1024 * 1024)
        subprocess.run(["sfdisk", "--quiet", str(disk)], input="label: gpt\n,8M\n,\n", text=True, check=True)
        loop = subprocess.run(["losetup", "-f", "--show", str(disk)], capture_output=True, text=True,
                              check=True).stdout.strip()
        e.loop = loop
        try:
            yield e
        finally:
            subprocess.run(["umount", "-l", str(e.root / "mnt/scratch")], check=False)
            subprocess.run(["losetup", "-d", loop], check=False)


def test_prepareclient_records_and_starts_its_daemon(env):
    # An existing mounted_filesystems is backed up, as the manual promises.
    (env.root / "etc/systemimager").mkdir(parents=True, exist_ok=True)
    (env.root / "etc/systemimager/mounted_filesystems").write_text("old\n")
    run_dir = env.tmp / "gold-run"
    proc = env.lab.run(env.gold, sys.executable, str(SICLIENT), "prepareclient", "--root", str(env.root),
                       "--server", APPL, "--port", "1873", "--run-dir", str(run_dir),
                       "--disk", env.loop, check=False, input="y\n")      # the manual's question, piped
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Prepare client for SystemImager? (y/[n]): y" in proc.stdout
    assert f"run 'prepareclient --stop --run-dir {run_dir}' here." in proc.stdout, "the real run directory"
    assert "under /run" not in proc.stdout, "this run directory is not under /run"
    m = re.search(r"One-time secret: (\S+)", proc.stdout)
    assert m, proc.stdout
    env.secret = m.group(1)
    si = env.root / "etc/systemimager"
    assert (si / "mounted_filesystems.beforesystemimager").read_text() == "old\n"
    mounts = (si / "mounted_filesystems").read_text()
    assert re.search(r"^tmpfs /mnt/scratch tmpfs ", mounts, re.M), mounts
    scheme = (si / f"partitionschemes/{env.loop[len('/dev/'):]}.sfdisk").read_text()
    assert "label: gpt" in scheme and scheme.count("start=") == 2, scheme
    assert '"blockdevices"' in (si / "partitionschemes/disks.json").read_text()
    for touched in ("mounted_filesystems", "disks.json", "rsyncd.conf"):
        assert touched in proc.stdout, f"prepareclient did not tell the user about {touched}"


def test_golden_daemon_refuses_other_hosts_and_bad_secrets(env):
    url = f"rsync://systemimager@{GOLD}:1873/root/etc/"
    stranger = env.lab.run(env.other, "rsync", url, check=False, env={**os.environ, "RSYNC_PASSWORD": env.secret})
    # rsync hides an unlisted module from a host it refuses ("Unknown module").
    assert stranger.returncode == 5 and ("access denied" in stranger.stderr.lower()
                                         or "unknown module" in stranger.stderr.lower()), stranger.stderr
    wrong = env.lab.run(env.appl, "rsync", url, check=False, env={**os.environ, "RSYNC_PASSWORD": "nope"})
    assert wrong.returncode != 0 and "auth failed" in wrong.stderr, wrong.stderr
    ok = env.lab.run(env.appl, "rsync", url, check=False, env={**os.environ, "RSYNC_PASSWORD": env.secret})
    assert ok.returncode == 0 and "fstab" in ok.stdout, ok.stderr
    bad = env.si(
        "getimage", "--golden-client", GOLD, "--image", "web", "--secret", "wrong", "--yes",
        "--no-progress", "--port", "1873", check=False)
    assert bad.returncode == 1 and "refused the secret" in bad.stderr, bad.stderr      # the pull failed
    unsafe = env.si("getimage", "--golden-client", GOLD, "--image", "../etc", "--yes", check=False)
    assert unsafe.returncode == 2 and "not allowed" in unsafe.stderr and len(unsafe.stderr.splitlines()) == 1
    assert env.store().image("web") is None and env.store().image("../etc") is None


def test_first_pull_is_exact(env):
    proc = env.getimage("web", "--exclude", "/var/cache/*", "--ip-assignment", "static_dhcp",
                        "--post-install", "reboot")
    assert proc.stdout.strip().endswith("web:1"), proc.stdout
    image = env.state / "images/web"
    assert image.is_symlink() and os.path.realpath(image).endswith(".versions/web/1")
    src = snapshot(env.root, skip=SKIP + ("var/cache/apt",))
    got = snapshot(image, skip=("var/cache/apt",))
    assert diff(src, got) == []
    # Exclusions: mount contents and patterns gone, their directories kept.
    assert (image / "mnt/scratch").is_dir() and not any((image / "mnt/scratch").iterdir())
    assert (image / "var/cache").is_dir() and not (image / "var/cache/apt").exists()
    # Spot checks that make the comparison's meaning concrete.
    assert os.lstat(image / "home/alice/orphan").st_uid == UNMAPPED_UID
    assert os.stat(image / "usr/bin/busy").st_ino == os.stat(image / "usr/lib/busy-again").st_ino
    assert os.lstat(image / "var/sparse.img").st_blocks * 512 < 1024 * 1024, "sparse file was filled in"
    assert "user:1234:rwx" in subprocess.run(["getfacl", "-c", str(image / "etc/fstab")],
                                             capture_output=True, text=True).stdout
    row = env.store().image("web")
    assert (row["ip_method"], row["post_install"], row["golden_client"]) == ("static_dhcp", "reboot", GOLD)
    assert env.store().latest_image_version("web")["state"] == "complete"


def test_getimage_asks_the_manuals_questions_from_a_pipe(env):
    """Section 9's getimage dialogue with piped answers: Continue?, the IP assignment menu answered
    by number, "Are you satisfied?", then "run addclients now?" and its sections (links to the
    image just pulled; the /etc/hosts section declined, so this machine's file is left alone)."""
    answers = ["y",                       # Continue?
               "3", "y",                  # Which method do you prefer? [1], Are you satisfied?
               "shutdown",                # what clients do after installing (by name)
               "y",                       # Would you like to run the "addclients" utility now?
               "y", "", "piped", "1", "2", "y",   # its Continue?, domain, base name, numbers, satisfied
               "", "",                    # soft links? [y], which image? [the one just pulled]
               "n"]                       # make /etc/hosts entries? no
    proc = env.lab.run(env.appl, *SI, "getimage", "--golden-client", GOLD, "--image", "asked", "--secret",
                       env.secret, "--no-progress", "--port", "1873", "--config", str(env.config),
                       input="\n".join(answers) + "\n", check=False, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = proc.stderr
    for line in ("Continue? ([y]/n): y", "1) static_dhcp -- ", "4) replicant -- ",
                 "Which method do you prefer? [1]: 3", "You have chosen method 3 for assigning IP addresses.",
                 "Are you satisfied? ([y]/n): y", 'Would you like to run the "addclients" utility now? (y/[n]): y',
                 "Which image would you like these hosts to receive? [asked]: ", "Your soft links have been created."):
        assert line in said, line
    store = env.store()
    image = store.image("asked")
    assert (image["ip_method"], image["post_install"]) == ("static", "shutdown")
    assert [(h.hostname, h.image, h.ip) for h in store.hosts() if h.hostname.startswith("piped")] == [
        ("piped1", "asked", None), ("piped2", "asked", None)]
    assert os.readlink(env.state / "scripts" / "piped1.sh") == "asked.master"
    # The input ends before a question is answered: one line naming the option, nothing pulled.
    short = env.lab.run(env.appl, *SI, "getimage", "--golden-client", GOLD, "--image", "unasked", "--secret",
                        env.secret, "--no-progress", "--port", "1873", "--config", str(env.config), input="",
                        check=False, timeout=60, cwd=REPO)
    assert short.returncode == 2 and "no answer to 'Continue?" in short.stderr.splitlines()[-1]
    assert store.image("unasked") is None


def test_second_version_shares_unchanged_files(env):
    from appliance.images import disk_usage
    changed = sorted((env.root / "usr/lib/x").iterdir())[:3]
    for p in changed:
        p.write_bytes(b"changed " + p.read_bytes())
    # Attribute-only changes: the new version gets them, the parent must not.
    os.chmod(env.root / "usr/lib/x/f0010", 0o700)
    os.chown(env.root / "usr/bin/busy", 4321, 4321)          # a hard-link group of three names
    os.setxattr(env.root / "usr/lib/x/f0011", "user.si.new", b"1")
    os.utime(env.root / "etc/abs-link", ns=(1, 2), follow_symlinks=False)
    before = snapshot(env.state / "images/.versions/web/1")
    proc = env.getimage("web")
    assert proc.stdout.strip().endswith("web:2"), proc.stdout
    v1, v2 = env.state / "images/.versions/web/1", env.state / "images/.versions/web/2"
    assert os.path.realpath(env.state / "images/web") == str(v2)
    same = v1 / "usr/lib/big.bin", v2 / "usr/lib/big.bin"
    assert os.stat(same[0]).st_ino == os.stat(same[1]).st_ino, "unchanged file not hard-linked"
    for p in changed:
        rel = p.relative_to(env.root)
        assert os.stat(v1 / rel).st_ino != os.stat(v2 / rel).st_ino
        assert (v2 / rel).read_bytes().startswith(b"changed ")
        assert not (v1 / rel).read_bytes().startswith(b"changed "), "old version was modified"
    assert snapshot(v1) == before, "making version 2 changed version 1"
    assert os.stat(v2 / "usr/lib/busy-again").st_uid == 4321
    assert os.stat(v2 / "usr/lib/busy-again").st_ino == os.stat(v2 / "usr/bin/busy").st_ino
    one = disk_usage([v1])
    both = disk_usage([v1, v2])
    assert both - one < 0.1 * one, f"second version costs {both - one} bytes of {one}"
    assert diff(snapshot(env.root, skip=SKIP + ("var/cache/apt",)),
                snapshot(v2, skip=("var/cache/apt",))) == []


def test_update_in_place_removes_deleted_files(env):
    (env.root / "etc/with space & ünïcode").unlink()
    (env.root / "etc/hostname").write_text("golden-updated\n")
    proc = env.getimage("web", "--update")
    assert proc.stdout.strip().endswith("web:2"), proc.stdout
    v1, v2 = env.state / "images/.versions/web/1", env.state / "images/.versions/web/2"
    assert not (v2 / "etc/with space & ünïcode").exists()
    assert (v2 / "etc/hostname").read_text() == "golden-updated\n"
    assert (v1 / "etc/with space & ünïcode").exists() and (v1 / "etc/hostname").read_text() == "golden\n"
    assert [v["version"] for v in env.store().image_versions("web")] == [1, 2]
    assert not list((env.state / "images/.versions/web").glob(".update-*"))


def test_no_change_makes_no_new_version(env):
    proc = env.getimage("web")
    assert proc.stdout.strip().endswith("web:2") and "has not changed" in proc.stderr, proc.stderr
    assert [v["version"] for v in env.store().image_versions("web")] == [1, 2]
    # The image's copy of mounted_filesystems was current: no second round trip for it.
    assert "reading /etc/systemimager/mounted_filesystems" not in proc.stderr, proc.stderr


def test_a_new_mount_on_the_golden_client_is_left_out(env):
    """The image's recorded mounts are a shortcut only: a changed list is fetched and obeyed."""
    recorded = env.root / "etc/systemimager/mounted_filesystems"
    before = recorded.read_text()
    (env.root / "srv/cache").mkdir(parents=True)
    (env.root / "srv/cache/volatile").write_text("not part of the system\n")
    recorded.write_text(before + "tmpfs /srv/cache tmpfs rw 0 0\n")   # as prepareclient records it
    try:
        proc = env.getimage("web", "--update")
        assert "reading /etc/systemimager/mounted_filesystems" in proc.stderr, proc.stderr
        v2 = env.state / "images/.versions/web/2"
        assert (v2 / "srv/cache").is_dir() and not (v2 / "srv/cache/volatile").exists()
    finally:
        recorded.write_text(before)
        shutil.rmtree(env.root / "srv/cache")
    env.getimage("web", "--update")


def _slow_pull(env) -> tuple[subprocess.Popen, int]:
    """A getimage of web throttled to 500 KB/s, and the rsync it started."""
    cmd = ["ip", "netns", "exec", env.appl, *SI, "getimage", "--config", str(env.config), "--golden-client",
           GOLD, "--image", "web", "--secret", env.secret, "--yes", "--no-progress", "--port", "1873",
           "--bwlimit", "500"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        # The rsync that getimage started (ip netns exec execs, so si is proc.pid).
        for child in open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split():
            if open(f"/proc/{child}/comm").read().strip() == "rsync" and b"--bwlimit=500" in \
                    open(f"/proc/{child}/cmdline", "rb").read():
                return proc, int(child)
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("getimage never started rsync")


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _current_is_still_web2(env) -> None:
    store = env.store()
    assert store.image_version("web", 3)["state"] == "incomplete"
    assert store.latest_image_version("web")["version"] == 2
    assert os.path.realpath(env.state / "images/web").endswith("/web/2")
    assert (env.state / "images/web/etc/hostname").read_text() == "golden-updated\n"
    conf = (env.state / "run/rsyncd.conf").read_text()
    assert "[web@3]" not in conf and "[web@2]" in conf


def test_interrupted_pull_leaves_current_version(env):
    (env.root / "usr/lib/new-big.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    proc, rsync_pid = _slow_pull(env)
    try:
        time.sleep(1.5)  # mid-transfer
        os.kill(rsync_pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out + err
    assert "web:3 is left incomplete" in err and "still web:2" in err, err
    _current_is_still_web2(env)


def test_kill_9_of_getimage_leaves_no_rsync_writing_and_current_version(env):
    """kill -9 of getimage itself: its rsync goes too (it would keep writing into web@3, which the next
    pull reuses), and nothing half-made becomes current."""
    proc, rsync_pid = _slow_pull(env)
    try:
        time.sleep(1.5)
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.time() + 5
        while time.time() < deadline and _running(rsync_pid):
            time.sleep(0.05)
        assert not _running(rsync_pid), "getimage's rsync outlived it"
    finally:
        if proc.poll() is None:
            proc.kill()
        if _running(rsync_pid):
            os.kill(rsync_pid, signal.SIGKILL)     # the orphan this test found: not left behind
    _current_is_still_web2(env)


def test_a_full_image_disk_fails_the_pull_clearly_and_damages_nothing(env):
    """The image store's file system full during getimage: a one-line error naming the cause, the new
    image's version left incomplete and never current, the other images untouched."""
    versions = env.state / "images/.versions/small"
    versions.mkdir(parents=True)
    disk = env.tmp / "small.ext4"
    subprocess.run(["truncate", "-s", "6M", str(disk)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-m", "0", str(disk)], check=True)
    subprocess.run(["mount", "-o", "loop", str(disk), str(versions)], check=True)
    try:
        out = env.getimage("small", check=False)
        assert out.returncode == 1, out.stdout + out.stderr
        error = out.stderr.strip().splitlines()[-1]        # after the manual's introduction
        assert error.startswith("si getimage:") and "small:1 is left incomplete" in error, error
        assert "No space left on device" in error, error
        store = env.store()
        assert store.image_version("small", 1)["state"] == "incomplete" and store.latest_image_version("small") is None
        assert not (env.state / "images/small").exists(), "nothing half-made became current"
        assert "[small" not in (env.state / "run/rsyncd.conf").read_text()
        _current_is_still_web2(env)
    finally:
        subprocess.run(["umount", "-l", str(versions)], check=False)
    env.si("images", "delete", "small")


def test_managed_daemon_serves_images_and_refuses_outsiders(env):
    up = env.lab.popen(env.appl, *SI, "up", "--config", str(env.config), cwd=REPO,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        listing = None
        deadline = time.time() + 20
        while time.time() < deadline:
            listing = env.lab.run(env.other, "rsync", f"rsync://{APPL}:8873/", check=False)
            if listing.returncode == 0:
                break
            time.sleep(0.2)
        assert listing.returncode == 0, listing.stderr
        modules = {line.split()[0] for line in listing.stdout.splitlines() if line.strip()}
        assert {"web", "web@1", "web@2", "scripts", "boot"} <= modules and "web@3" not in modules, modules
        dest = env.tmp / "served"
        pull = env.lab.run(env.other, "rsync", "-aHAX", "--numeric-ids", f"rsync://{APPL}:8873/web/", f"{dest}/",
                           check=False)
        assert pull.returncode == 0, pull.stderr
        assert diff(snapshot(env.state / "images/web"), snapshot(dest)) == []
        old = env.lab.run(env.other, "rsync", f"rsync://{APPL}:8873/web@1/etc/hostname", str(env.tmp / "h1"),
                          check=False)
        assert old.returncode == 0 and (env.tmp / "h1").read_text() == "golden\n", old.stderr
        refused = env.lab.run(env.other, "rsync", f"--address={OUTSIDE}", f"rsync://{APPL}:8873/web/etc/",
                              check=False)
        assert refused.returncode != 0 and "access denied" in refused.stderr.lower(), refused.stderr
        # A new version made by the CLI while the daemon runs is served at once.
        (env.root / "etc/motd").write_text("v4\n")
        env.getimage("web")
        got = env.lab.run(env.other, "rsync", f"rsync://{APPL}:8873/web/etc/motd", str(env.tmp / "motd"),
                          check=False)
        assert got.returncode == 0 and (env.tmp / "motd").read_text() == "v4\n", got.stderr
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=15)
        except subprocess.TimeoutExpired:
            up.kill()


def test_images_subcommands(env):
    listing = env.si("images", "list").stdout
    assert "web" in listing
    versions = env.si("images", "versions", "web").stdout
    assert "incomplete" not in versions or "3" in versions
    shown = env.si("images", "show", "web").stdout
    assert "static_dhcp" in shown and "current version:" in shown
    out = env.si("images", "chroot", "web", "/usr/bin/busy", check=False)
    # The image has no real shell; running a missing program fails inside the chroot, not outside.
    assert out.returncode != 0
    deleted = env.si("images", "delete", "web:1")
    assert "deleted web version(s) 1" in deleted.stdout
    assert not (env.state / "images/.versions/web/1").exists()
    assert (env.state / "images/web/usr/lib/big.bin").exists(), "deleting a parent broke its child"
    bad = env.si("images", "delete", "web/../x", check=False)
    assert bad.returncode == 2 and "not allowed" in bad.stderr
    env.si("images", "delete", "web")
    assert not (env.state / "images/web").exists() and env.store().image("web") is None
    assert "[web" not in (env.state / "run/rsyncd.conf").read_text()


def test_stop_tears_the_golden_daemon_down(env):
    run_dir = env.tmp / "gold-run"
    proc = env.lab.run(env.gold, sys.executable, str(SICLIENT), "prepareclient", "--stop",
                       "--run-dir", str(run_dir), check=False)
    assert proc.returncode == 0 and "Stopped" in proc.stdout, proc.stdout + proc.stderr
    assert not (run_dir / "rsyncd.conf").exists() and not (run_dir / "rsyncd.secrets").exists()
    gone = env.lab.run(env.appl, "rsync", f"rsync://systemimager@{GOLD}:1873/root/", check=False,
                       env={**os.environ, "RSYNC_PASSWORD": env.secret})
    assert gone.returncode != 0

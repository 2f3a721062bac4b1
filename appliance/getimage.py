"""getimage: pull a golden client's system into the image store over rsync.

The golden client runs prepareclient, which records its mounted file systems
and starts a temporary rsync daemon exporting `/` as module `root` for this
server only, with a one-time secret. We read mounted_filesystems first, exclude
the contents of every mount whose file system is not part of an installable
system (proc, sysfs, tmpfs, nfs, iso9660...), add the user's patterns, and pull
with `rsync -aHAX --numeric-ids --sparse --delete` into a new version linked to
its parent (or, with --update, into a staging copy swapped in at the end).
"""
from __future__ import annotations

import logging
import os
import re
import selectors
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from services.children import die_with_parent

from .config import IP_METHODS, Config
from .images import ImageError, ImageStore, break_links, check_image_name, clone_tree

log = logging.getLogger("si.getimage")

POST_INSTALL = ("reboot", "shutdown", "beep")
RSYNC_USER = "systemimager"
MODULE = "root"
MOUNTED_FILESYSTEMS = "etc/systemimager/mounted_filesystems"
# File systems an installed system is made of; every other mount's contents are
# left out (the mount point itself is kept, so the installed system can mount it).
SUPPORTED_FS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "reiserfs", "jfs", "f2fs",
                          "vfat", "msdos", "fat"})
# Exit codes of rsync that still mean "the tree is here": 24 = files vanished
# while we read them, normal on a live golden client.
RSYNC_OK = {0, 24}
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")
_PROGRESS = re.compile(r"^\s*([\d,]+)\s+(\d+)%\s+(\S+)\s+(\d+:\d\d:\d\d)")
_TOTAL_SIZE = re.compile(r"^Total file size: ([\d,]+) bytes")
# What an exact copy takes. --modify-window=-1 compares times to the
# nanosecond: by default rsync compares whole seconds, and leaves a directory
# it wrote into with the write time when the source directory's time falls in
# the same second (seen in CI: prepareclient, then getimage within a second).
EXACT = ["-aHAX", "--numeric-ids", "--modify-window=-1"]


@dataclass
class Options:
    golden_client: str
    image: str
    excludes: list[str] = field(default_factory=list)
    exclude_file: Path | None = None
    secret: str | None = None
    port: int = 873
    ip_method: str | None = None
    post_install: str | None = None
    update: bool = False
    bwlimit: int | None = None   # KiB/s, to spare the golden client's network


@dataclass
class Result:
    image: str
    version: int
    path: Path
    size: int | None
    seconds: float
    excluded: list[str]
    warnings: list[str]
    update: bool
    unchanged: bool = False   # the current version already matched: nothing was made


class PullFailed(ImageError):
    """rsync did not bring the whole tree; the message says what rsync said."""


def check_options(opts: Options) -> None:
    check_image_name(opts.image)
    if not _HOST.match(opts.golden_client) or ".." in opts.golden_client:
        raise ImageError(f"golden client {opts.golden_client!r} is not a host name or IPv4 address")
    if opts.ip_method is not None and opts.ip_method not in IP_METHODS:
        raise ImageError(f"ip-assignment {opts.ip_method!r}: choose one of {', '.join(IP_METHODS)}")
    if opts.post_install is not None and opts.post_install not in POST_INSTALL:
        raise ImageError(f"post-install {opts.post_install!r}: choose one of {', '.join(POST_INSTALL)}")
    if not 1 <= opts.port <= 65535:
        raise ImageError(f"port {opts.port} is outside 1-65535")
    for pattern in opts.excludes:
        if not pattern or "\n" in pattern or "\0" in pattern:
            raise ImageError(f"exclude pattern {pattern!r} is empty or spans lines")
    if opts.exclude_file is not None and not opts.exclude_file.is_file():
        raise ImageError(f"exclude file {opts.exclude_file} does not exist")


# --- mounted file systems -> exclusions (pure) -----------------------------

def _unescape_mount(field_: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash as \\040 etc."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_)


def parse_mounts(text: str) -> list[tuple[str, str, str]]:
    """(device, mount point, fs type) for each well-formed line of /proc/mounts."""
    mounts = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1].startswith("/"):
            mounts.append((_unescape_mount(parts[0]), _unescape_mount(parts[1]), parts[2]))
    return mounts


def _escape_pattern(path: str) -> str:
    return re.sub(r"([\[\]*?\\])", r"\\\1", path)


def mount_exclusions(text: str) -> list[str]:
    """rsync exclude rules for the contents of every unsupported mount."""
    rules = []
    for _dev, point, fstype in parse_mounts(text):
        if fstype in SUPPORTED_FS or point == "/":
            continue
        rule = f"{_escape_pattern(point.rstrip('/'))}/*"
        if rule not in rules:
            rules.append(rule)
    return rules


# --- running rsync ---------------------------------------------------------

def _url(opts: Options, path: str = "") -> str:
    return f"rsync://{RSYNC_USER}@{opts.golden_client}:{opts.port}/{MODULE}/{path}"


def _env(opts: Options) -> dict:
    env = dict(os.environ)
    env.pop("RSYNC_PASSWORD", None)
    if opts.secret is not None:
        env["RSYNC_PASSWORD"] = opts.secret  # never on the command line (ps shows it)
    env["LC_ALL"] = "C"  # numbers and messages we parse stay in one format
    return env


def _explain(status: int, stderr: str) -> str:
    said = " ".join(line.strip() for line in stderr.strip().splitlines()[-3:])
    if "auth failed" in stderr:
        hint = "; the golden client refused the secret (give the one prepareclient printed with --secret)"
    elif "access denied" in stderr.lower() or "not allowed" in stderr.lower():
        hint = "; the golden client's daemon does not accept this server (prepareclient --server)"
    elif "Connection refused" in stderr or "No route" in stderr:
        hint = "; is prepareclient's rsync daemon running on the golden client?"
    else:
        hint = ""
    return f"rsync exit {status}: {said or 'no message'}{hint}"


def _recorded_mounts(current: dict | None) -> str | None:
    """The mounted_filesystems file inside the image's current version, if any."""
    if current is None:
        return None
    try:
        return (Path(current["path"]) / MOUNTED_FILESYSTEMS).read_text(errors="replace")
    except OSError:
        return None


def fetch_mounted_filesystems(opts: Options, workdir: Path) -> str:
    dest = workdir / "mounted_filesystems"
    proc = subprocess.run(["rsync", "--quiet", _url(opts, MOUNTED_FILESYSTEMS), str(dest)],
                          env=_env(opts), capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        if "No such file" in proc.stderr or "change_dir" in proc.stderr or "failed: No such" in proc.stderr:
            raise PullFailed(f"golden client {opts.golden_client} has no /{MOUNTED_FILESYSTEMS}: "
                             "run prepareclient there first")
        raise PullFailed(f"cannot read /{MOUNTED_FILESYSTEMS} from {opts.golden_client}: "
                         + _explain(proc.returncode, proc.stderr))
    return dest.read_text(errors="replace")


def rsync_command(opts: Options, write_to: Path, link_dest: Path | None, filter_file: Path,
                  progress: bool = True) -> list[str]:
    cmd = ["rsync", *EXACT, "--sparse", "--delete", "--delete-excluded", "--stats",
           f"--exclude-from={filter_file}"]
    if progress:
        # Measured: about a third more time on a 30,000-file first pull, so only when shown.
        cmd.append("--info=progress2")
    if link_dest is not None:
        cmd.append(f"--link-dest={link_dest}")
    if opts.bwlimit:
        cmd.append(f"--bwlimit={opts.bwlimit}")
    return cmd + [_url(opts), f"{write_to}/"]


ProgressFn = Callable[[int, int], None]   # (bytes so far, percent)


def differences(opts: Options, current: Path, filter_file: Path) -> list[tuple[str, str]] | None:
    """What a pull would change in the current version (a dry run); None if unknown.

    Returns (itemize code, name) pairs. Costs about what a no-change rsync
    costs (file lists and stat, no data); spares making a version identical to
    its parent and tells which files change only in their attributes.
    """
    cmd = ["rsync", "--dry-run", *EXACT, "--delete", "--delete-excluded",
           "--out-format=%i %n", f"--exclude-from={filter_file}", _url(opts), f"{current}/"]
    proc = subprocess.run(cmd, env=_env(opts), capture_output=True)
    if proc.returncode not in RSYNC_OK:
        return None  # let the real pull report the problem
    out = []
    for line in proc.stdout.split(b"\n"):
        if len(line) > 12 and line[11:12] == b" ":
            out.append((line[:11].decode(errors="replace"), _unescape_name(line[12:])))
        elif line.strip():
            out.append(("?", line.decode(errors="replace")))
    return out


def _unescape_name(raw: bytes) -> str:
    """rsync prints unprintable bytes of names as \\#ooo (octal)."""
    raw = re.sub(rb"\\#([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), raw)
    return os.fsdecode(raw).rstrip("/")


def attribute_only(changes: list[tuple[str, str]]) -> list[str]:
    """Names whose content stays but whose attributes change (rsync would set them in place)."""
    return [name for code, name in changes
            if len(code) == 11 and code[0] == "." and code[1] in "fLDS" and code[2:].strip(".")]


def run_rsync(cmd: list[str], env: dict, on_progress: ProgressFn | None) -> tuple[int, str, str]:
    """Run rsync, feeding its --info=progress2 lines to on_progress; (status, stdout, stderr).

    rsync runs in its own process group: when it dies (or we are interrupted)
    the helper process it forked goes too, instead of holding the pipe open.
    """
    with tempfile.TemporaryFile() as errf:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=errf, start_new_session=True,
                                preexec_fn=die_with_parent)   # a killed getimage leaves no rsync writing
        out_lines: list[str] = []
        buf = b""

        def consume(chunk: bytes) -> None:
            nonlocal buf
            buf += chunk
            *lines, buf = re.split(rb"[\r\n]", buf)
            for raw in lines:
                line = raw.decode(errors="replace")
                m = _PROGRESS.match(line)
                if m:
                    if on_progress:
                        on_progress(int(m.group(1).replace(",", "")), int(m.group(2)))
                elif line.strip():
                    out_lines.append(line)

        try:
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ)
                while True:
                    if sel.select(timeout=0.2):
                        chunk = os.read(proc.stdout.fileno(), 65536)
                        if not chunk:
                            break
                        consume(chunk)
                    elif proc.poll() is not None:
                        _kill_group(proc, signal.SIGKILL)  # a leftover helper keeps the pipe open
            status = proc.wait()
            consume(b"\n")
        except BaseException:
            # Interrupted (Ctrl-C, kill): stop rsync, leave the version incomplete.
            _kill_group(proc, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                _kill_group(proc, signal.SIGKILL)
                proc.wait()
            raise
        finally:
            _kill_group(proc, signal.SIGKILL)
            proc.stdout.close()
        errf.seek(0)
        return status, "\n".join(out_lines), errf.read().decode(errors="replace")


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _total_size(stats: str) -> int | None:
    for line in stats.splitlines():
        m = _TOTAL_SIZE.match(line.strip())
        if m:
            return int(m.group(1).replace(",", ""))
    return None


def getimage(cfg: Config, store, opts: Options, on_progress: ProgressFn | None = None,
             on_note: Callable[[str], None] = lambda s: None) -> Result:
    """Pull the golden client into a new version (or update in place); raise on failure."""
    check_options(opts)
    images = ImageStore(cfg, store)
    started = time.monotonic()
    with images.locked(opts.image), tempfile.TemporaryDirectory(prefix="getimage-") as tmp:
        workdir = Path(tmp)
        filter_file = workdir / "exclude"
        extra_rules = list(opts.excludes)
        if opts.exclude_file is not None:
            extra_rules += [l for l in opts.exclude_file.read_text().splitlines()
                            if l.strip() and not l.lstrip().startswith("#")]

        def write_filter(mounts: str) -> list[str]:
            excluded = mount_exclusions(mounts)
            filter_file.write_text("".join(r + "\n" for r in excluded + extra_rules))
            return excluded

        current = images.current(opts.image)
        if opts.update and current is None:
            on_note(f"image {opts.image} has no complete version yet: making version 1")
        # The current version holds the golden client's mounted_filesystems as last
        # pulled. If the dry run finds that file unchanged, the filter made from it
        # is the right one, and the round trip to fetch it (a tenth of a second) is saved.
        recorded = _recorded_mounts(current)
        changes, mounts = None, None
        if recorded is not None:
            excluded = write_filter(recorded)
            changes = differences(opts, Path(current["path"]), filter_file)
            if changes is not None and not any(name == MOUNTED_FILESYSTEMS for _, name in changes):
                mounts = recorded
        if mounts is None:
            on_note(f"reading /{MOUNTED_FILESYSTEMS} from {opts.golden_client}")
            mounts = fetch_mounted_filesystems(opts, workdir)
            if mounts != recorded:
                excluded = write_filter(mounts)
                changes = differences(opts, Path(current["path"]), filter_file) if current else None
        if changes == []:
            store.set_image_details(opts.image, ip_method=opts.ip_method, post_install=opts.post_install,
                                    golden_client=opts.golden_client)
            on_note(f"{opts.image}:{current['version']} already matches {opts.golden_client}: nothing to pull")
            return Result(opts.image, current["version"], Path(current["path"]), current["size"],
                          time.monotonic() - started, excluded, [], opts.update, unchanged=True)
        target = images.begin(opts.image, update=opts.update, golden_client=opts.golden_client,
                              ip_method=opts.ip_method, post_install=opts.post_install)
        on_note(f"pulling into {opts.image}:{target.version}"
                + (" (update in place)" if target.update else "")
                + (f", sharing unchanged files with version {target.parent}"
                   if target.parent and not target.update else ""))
        link_dest = target.link_dest
        if link_dest is not None and changes is not None:
            if clone_tree(link_dest, target.write_to):
                # Cloned by hard links; rsync now only replaces what changed (see images.py).
                # (An attribute-only change made on the golden client between the dry run
                # and this pull would still be applied to the shared inode: a small window.)
                break_links(target.write_to, attribute_only(changes))
                link_dest = None
            else:
                images.reset_dir(target.write_to)  # fall back to --link-dest into an empty dir
        cmd = rsync_command(opts, target.write_to, link_dest, filter_file, progress=on_progress is not None)
        log.debug("running %s", " ".join(cmd))
        try:
            status, stdout, stderr = run_rsync(cmd, _env(opts), on_progress)
        except BaseException:
            images.abandon(target)
            raise
        warnings = []
        if status not in RSYNC_OK:
            images.abandon(target)
            current = images.current(opts.image)
            keep = (f"the current version is still {opts.image}:{current['version']}" if current
                    else f"{opts.image} has no complete version")
            left = ("" if target.update else f"; {opts.image}:{target.version} is left incomplete")
            _event(store, "getimage-failed", f"{opts.image}:{target.version}: rsync exit {status}")
            raise PullFailed(f"pull from {opts.golden_client} failed ({_explain(status, stderr)}){left}; {keep}")
        if status == 24:
            warnings.append("some files vanished on the golden client while being read (rsync exit 24)")
        images.commit(target, _total_size(stdout))
    refresh_daemon(cfg, store)
    _event(store, "getimage", f"{opts.image}:{target.version} from {opts.golden_client}")
    return Result(opts.image, target.version, target.path, _total_size(stdout),
                  time.monotonic() - started, excluded, warnings, target.update)


def refresh_daemon(cfg: Config, store) -> None:
    """Rewrite rsyncd.conf so a running daemon (it re-reads per connection) sees the change."""
    from services.rsyncd import render
    render.write_config(cfg, store)


def _event(store, kind: str, detail: str) -> None:
    try:
        store.event("images", kind, detail)
    except Exception:
        log.exception("could not record event")

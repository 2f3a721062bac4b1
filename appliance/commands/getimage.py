"""si getimage: pull a golden client's system into a new image version."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

from .. import getimage as engine
from ..config import IP_METHODS
from ..images import ImageError
from ._common import CliError, OperationFailed, add_config_arg, load_config, open_store, stderr_console


def register(sub) -> None:
    p = sub.add_parser("getimage", help="pull a golden client's system into the image store",
                       description="Pull the system of a golden client (prepared with prepareclient) "
                                   "into a new version of IMAGE, sharing unchanged files with the "
                                   "previous version; --update rewrites the current version instead.")
    add_config_arg(p)
    p.add_argument("--golden-client", required=True, metavar="HOST", help="the golden client's name or IP")
    p.add_argument("--image", required=True, metavar="NAME", help="image name (new or existing)")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="rsync exclude pattern, e.g. /home/* (repeat)")
    p.add_argument("--exclude-file", type=Path, metavar="FILE", help="file of exclude patterns, one a line")
    p.add_argument("--secret", help="the one-time secret prepareclient printed (default: $SI_SECRET)")
    p.add_argument("--port", type=int, default=873, help="port of the golden client's rsync daemon")
    p.add_argument("--ip-assignment", choices=IP_METHODS, help="how installed clients get their address")
    p.add_argument("--post-install", choices=engine.POST_INSTALL, help="what installed clients do at the end")
    p.add_argument("--update", action="store_true",
                   help="update the current version in place (only changes move, deleted files go) "
                        "instead of making a new version")
    p.add_argument("--bwlimit", type=int, metavar="KBPS", help="limit the pull's bandwidth (KiB/s)")
    p.add_argument("--no-master-script", action="store_true",
                   help="do not write the image's master autoinstall script at all")
    p.add_argument("--keep-master", action="store_true",
                   help="leave a master script edited by hand as it is (default: keep it as "
                        "<image>.master.edited-<time> and write the new one; asked at a terminal)")
    p.add_argument("--yes", action="store_true", help="ask nothing: confirm, and leave unset what no option gives")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (also off when stderr is not a terminal; saves rsync's progress cost)")
    p.set_defaults(func=getimage)


def _ask(question: str, choices: tuple[str, ...], default: str) -> str:
    while True:
        answer = input(f"{question} ({'/'.join(choices)}) [{default}]: ").strip() or default
        if answer in choices:
            return answer
        print(f"please answer one of: {', '.join(choices)}")


@contextmanager
def _progress_bar(console, image: str, show: bool):
    """Yields the progress callback for the engine (None: no progress asked of rsync)."""
    if not show:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, \
        TransferSpeedColumn
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                        DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                        console=console, transient=False)
    task = progress.add_task(image, total=100)

    def on_progress(done: int, percent: int) -> None:
        # rsync reports bytes so far and a percentage; derive the total from both.
        total = done * 100 // percent if percent else None
        progress.update(task, completed=done, total=total or max(done, 1))

    with progress:
        yield on_progress


def getimage(args) -> int:
    cfg = load_config(args)
    store = open_store(cfg)
    opts = engine.Options(golden_client=args.golden_client, image=args.image, excludes=args.exclude,
                          exclude_file=args.exclude_file, secret=args.secret or os.environ.get("SI_SECRET"),
                          port=args.port, ip_method=args.ip_assignment, post_install=args.post_install,
                          update=args.update, bwlimit=args.bwlimit)
    try:
        engine.check_options(opts)
    except ImageError as exc:
        raise CliError(str(exc)) from None
    console = stderr_console()
    existing = store.image(args.image)
    what = ("update the current version of" if args.update and existing else
            "make a new version of" if existing else "create")
    console.print(f"This program will {what} image [bold]{args.image}[/] from [bold]{args.golden_client}[/]; "
                  "it will not get /proc, NFS, tmpfs or other file systems that are not part of "
                  "an installed system.")
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError("not running interactively: pass --yes to go ahead without the question")
        if input("Continue? ([y]/n): ").strip().lower() not in ("", "y", "yes"):
            console.print("Nothing done.")
            return 1
        opts.ip_method = opts.ip_method or _ask("IP assignment method", IP_METHODS,
                                                (existing or {}).get("ip_method") or "dynamic_dhcp")
        opts.post_install = opts.post_install or _ask("After installing, clients should", engine.POST_INSTALL,
                                                      (existing or {}).get("post_install") or "reboot")
    show = not args.no_progress and console.is_terminal
    try:
        with _progress_bar(console, args.image, show) as on_progress:
            result = engine.getimage(cfg, store, opts, on_progress, on_note=lambda s: console.print(s))
    except ImageError as exc:
        raise OperationFailed(str(exc)) from None
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    size = f"{result.size / 1e6:.1f} MB" if result.size is not None else "unknown size"
    if result.unchanged:
        console.print(f"{result.image}:{result.version} stays current: the golden client has not changed")
    else:
        console.print(f"{result.image}:{result.version} is complete and current: {result.path} ({size}, "
                      f"{result.seconds:.1f} s; left out the contents of: "
                      f"{', '.join(result.excluded) or 'nothing'})")
    if not args.no_master_script:
        from ..autoinstall.render import master_edited, write_master_script
        keep = args.keep_master
        if not keep and not args.yes and sys.stdin.isatty() and master_edited(cfg, result.image):
            keep = _ask(f"{result.image}.master was edited by hand (the manual's customised master script). "
                        "Write a new one for this image, keeping yours as a backup?", ("y", "n"), "y") == "n"
        written = write_master_script(cfg, store, result.image, keep_edited=keep, note=console.print)
        console.print(f"master autoinstall script: {written}")
    print(f"{result.image}:{result.version}")
    return 0

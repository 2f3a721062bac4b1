"""si getimage: pull a golden client's system into a new image version."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from .. import getimage as engine
from ..config import IP_METHODS
from ..images import ImageError
from ._common import CliError, OperationFailed, add_config_arg, load_config, open_store, stderr_console
from ._dialogue import Dialogue


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
    p.add_argument("--yes", action="store_true",
                   help="ask nothing: confirm, and leave unset what no option gives (else the manual's questions "
                        "are asked, on a terminal or from a pipe)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (also off when stderr is not a terminal; saves rsync's progress cost)")
    p.set_defaults(func=getimage)


# The manual's four ways, in its order and with its numbers (its default is 1).
IP_MENU = [("static_dhcp", "a DHCP server gives each client installed with this image the same address "
                           "every time (see mkdhcpstatic)"),
           ("dynamic_dhcp", "a DHCP server gives clients installed with this image addresses from its pool; "
                            "they may differ from boot to boot"),
           ("static", "the address a client has while it autoinstalls becomes its permanent address"),
           ("replicant", "the image's network settings are left as they are (a backup and quick restore "
                         "of one machine)")]
POST_MENU = [("reboot", "boot the installed system"), ("shutdown", "power off"),
             ("beep", "stay up and beep until someone comes")]


def ip_assignment_dialogue(dialogue: Dialogue, default: str) -> str:
    """IP Address Assignment, as the manual's getimage asks it: the menu, the choice, "satisfied?"."""
    while True:
        dialogue.say()
        dialogue.say("IP Address Assignment")
        dialogue.say()
        dialogue.say("There are four ways to assign IP addresses to the client systems on an ongoing basis:")
        chosen = dialogue.menu("Which method do you prefer?", IP_MENU, default, "--ip-assignment")
        number = [name for name, _ in IP_MENU].index(chosen) + 1
        dialogue.say(f"You have chosen method {number} for assigning IP addresses.")
        dialogue.say()
        if dialogue.yes("Are you satisfied?", True, "--ip-assignment"):
            return chosen


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
    dialogue = Dialogue()
    if not args.yes and not dialogue.yes("Continue?", True, "--yes"):
        console.print("Nothing done.")
        return 1
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
    if not args.yes:       # after the pull, as the manual asks them
        dialogue.pause()
        settings = store.image(result.image) or {}
        if args.ip_assignment is None:
            opts.ip_method = ip_assignment_dialogue(dialogue, settings.get("ip_method") or "static_dhcp")
        if args.post_install is None:
            dialogue.say()
            opts.post_install = dialogue.menu("What should clients do when their install is done?", POST_MENU,
                                              settings.get("post_install") or "reboot", "--post-install")
        store.set_image_details(result.image, ip_method=opts.ip_method, post_install=opts.post_install)
    if not args.no_master_script:
        from ..autoinstall.render import master_edited, write_master_script
        keep = args.keep_master
        if not keep and not args.yes and master_edited(cfg, result.image):
            keep = not dialogue.yes(f"{result.image}.master was edited by hand (the manual's customised master "
                                    "script). Write a new one for this image, keeping yours as a backup?", True,
                                    "--keep-master")
        written = write_master_script(cfg, store, result.image, keep_edited=keep, note=console.print)
        console.print(f"master autoinstall script: {written}")
    print(f"{result.image}:{result.version}")
    if not args.yes and dialogue.yes('Would you like to run the "addclients" utility now?', False):
        from argparse import Namespace

        from .addclients import addclients
        return addclients(Namespace(config=args.config, domain=None, basename=None, start=None, end=None,
                                    image=None, ip_range=None, etc_hosts=Path("/etc/hosts"), no_etc_hosts=False,
                                    yes=False, default_image=result.image), dialogue)
    return 0

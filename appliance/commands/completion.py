"""si completion SHELL and si manpage: both generated from the commands' own parser (shtab and
argparse-manpage), so they never disagree with `si --help`."""
from __future__ import annotations

import sys
from pathlib import Path

SHELLS = ("bash", "zsh", "tcsh")


def register(sub) -> None:
    p = sub.add_parser("completion", help="print a shell completion script for si (bash, zsh or tcsh)")
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(func=completion)
    m = sub.add_parser("manpage", help="print the si(1) manual page (roff), or write it to --output")
    m.add_argument("--output", type=Path, help="write it here (e.g. /usr/local/share/man/man1/si.1)")
    m.set_defaults(func=manpage)


def _full_parser():
    from ..cli import build_parser
    return build_parser(None)      # every command, not only the one being run


def completion(args) -> int:
    import shtab
    sys.stdout.write(shtab.complete(_full_parser(), args.shell))
    return 0


def manpage(args) -> int:
    from argparse_manpage.manpage import Manpage

    from ..cli import version
    text = str(Manpage(_full_parser(), _data={
        "project_name": "systemimager-appliance", "version": version(),
        "description": "install the same Linux on many machines over the network",
        "manual_title": "SystemImager appliance"}))
    if args.output is None:
        sys.stdout.write(text)
        return 0
    from services.atomicfile import write_atomic
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.output, text)
    print(f"wrote {args.output}")
    return 0

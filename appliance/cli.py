"""The `si` command: parses arguments, calls library code, prints results.

Subcommands live in appliance/commands/, one module each with a
`register(subparsers)` function; they are discovered, so adding a command
touches only its own module. SystemImager spelling is accepted too:
single-dash long options abbreviated to minimum uniqueness
(`getimage -golden-client X -im Y`, `updateclient -a -s server -c eth0`).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import pkgutil
import sys
from pathlib import Path

from . import commands
from .commands._common import CliError
from .config import ConfigError


def normalise_single_dash(argv: list[str]) -> list[str]:
    """Turn SystemImager-style `-image` / `-a` into `--image` / `--a`.

    argparse then expands `--a` to the one long option it uniquely prefixes.
    `-h` stays help; anything after `--`, and negative numbers, are untouched.
    """
    out = []
    for i, arg in enumerate(argv):
        if arg == "--":
            out.extend(argv[i:])
            break
        if len(arg) >= 2 and arg[0] == "-" and arg[1].isalpha() and arg != "-h":
            arg = "-" + arg
        out.append(arg)
    return out


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def version() -> str:
    """The installed distribution's version (pyproject.toml's), or 'unknown' when run from a bare tree."""
    try:
        return importlib.metadata.version("systemimager-appliance")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def command_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_"))


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given argv naming a command, only that command's module is imported.

    Importing every command (rich, jinja2, asyncio...) costs a third of a second,
    which a script calling `si getimage` in a loop would pay each time.
    """
    parser = _Parser(prog="si", description="SystemImager appliance: PXE install server and tools")
    # "--v" spelled out: the manual's "-v" arrives as "--v", which would also prefix --version
    parser.add_argument("-v", "--v", "--verbose", dest="verbose", action="store_true", help="log debug detail")
    parser.add_argument("--version", action="version", version=f"si {version()}")
    # Also before the command (`si --config F images list`); a command's own --config wins.
    parser.add_argument("--config", dest="global_config", type=Path, default=None, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    names = command_names()
    chosen = next((a for a in argv or [] if not a.startswith("-")), None)
    for name in [chosen] if chosen in names else names:
        importlib.import_module(f"{commands.__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = normalise_single_dash(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.global_config is not None and getattr(args, "config", None) is None and hasattr(args, "config"):
        args.config = args.global_config
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        result = args.func(args)
    except (CliError, ConfigError) as exc:
        print(f"si {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())

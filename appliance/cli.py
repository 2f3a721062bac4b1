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
import re
import sys
from pathlib import Path

from . import commands
from .commands._common import EXIT_USAGE, CliError
from .config import ConfigError


def normalise_single_dash(argv: list[str], parser: argparse.ArgumentParser | None = None) -> list[str]:
    """SystemImager's spelling: `-image` / `-a` become `--image` / `--a` (argparse then expands
    an abbreviation to the one long option it prefixes). See normalise()."""
    return normalise(parser or build_parser(argv), argv)[0]


def normalise(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """argv with single-dash long options doubled, and what was rewritten (new -> as typed).

    Left as typed: options the parser knows as they are (-h, -v, -o), option values,
    negative numbers, anything after `--`, and the command line a command runs
    (`si images chroot IMAGE ls -la`: its REMAINDER positional).
    """
    out: list[str] = []
    rewrites: dict[str, str] = {}
    p, positionals, i = parser, 0, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out += argv[i:]
            break
        if not (arg.startswith("-") and arg[1:2].isalpha()) and not arg.startswith("--"):
            sub = _subcommand(p, arg)
            if sub is not None:
                p, positionals = sub, 0
            else:
                positionals += 1
                free = _free_command_after(p)
                if free is not None and positionals > free:
                    out += argv[i:]         # the command to run, exactly as typed
                    break
            out.append(arg)
            i += 1
            continue
        name = arg.split("=", 1)[0]
        known = name in p._option_string_actions or name in parser._option_string_actions
        new = arg if known or arg.startswith("--") else "-" + arg
        if new != arg:
            rewrites[new.split("=", 1)[0]] = name
        out.append(new)
        action = _option_action(p, new.split("=", 1)[0]) or _option_action(parser, new.split("=", 1)[0])
        if action is not None and action.nargs != 0 and "=" not in new and i + 1 < len(argv):
            out.append(argv[i + 1])         # its value, whatever it looks like
            i += 2
            continue
        i += 1
    return out, rewrites


def _subcommand(p: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(name)
    return None


def _free_command_after(p: argparse.ArgumentParser) -> int | None:
    """How many positionals come before p's REMAINDER one (a command line to run), if it has one."""
    positionals = [a for a in p._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]
    if positionals and positionals[-1].nargs == argparse.REMAINDER:
        return len(positionals) - 1
    return None


def _option_action(p: argparse.ArgumentParser, name: str) -> argparse.Action | None:
    """The action `name` selects in p, exactly or as argparse's unique long-option prefix."""
    if name in p._option_string_actions:
        return p._option_string_actions[name]
    if not name.startswith("--"):
        return None
    matches = {a for opt, a in p._option_string_actions.items() if opt.startswith(name)}
    return matches.pop() if len(matches) == 1 else None


class _Parser(argparse.ArgumentParser):
    rewrites: dict[str, str] = {}      # normalise()'s, so errors name options as the user typed them

    def error(self, message: str):  # one line, exit 2
        for new, typed in _Parser.rewrites.items():
            message = re.sub(rf"(?<![\w-]){re.escape(new)}(?![\w-])", typed, message)
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
    typed = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(typed)
    argv, _Parser.rewrites = normalise(parser, typed)
    args = parser.parse_args(argv)
    if args.global_config is not None and getattr(args, "config", None) is None and hasattr(args, "config"):
        args.config = args.global_config
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        result = args.func(args)
    except CliError as exc:
        print(f"si {args.command}: {exc}", file=sys.stderr)
        return exc.status
    except ConfigError as exc:
        print(f"si {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())

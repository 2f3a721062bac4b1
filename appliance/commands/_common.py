"""What many commands share: the --config option and loading it."""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from .. import config as config_mod
from ..store import Store


class CliError(RuntimeError):
    """A command-line problem: printed as one line, exit status 2."""


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None,
                        help=f"appliance config (default: $SI_CONFIG or {config_mod.DEFAULT_PATH})")


def config_path(args: argparse.Namespace) -> Path:
    return args.config or Path(os.environ.get("SI_CONFIG", config_mod.DEFAULT_PATH))


def load_config(args: argparse.Namespace) -> config_mod.Config:
    return config_mod.load(config_path(args))


def open_store(cfg: config_mod.Config) -> Store:
    return Store(cfg.db_path)


class PlainConsole:
    """Stands in for rich's Console when stderr is not a terminal (scripts, logs, cron).

    Importing rich costs a tenth of a second, which a command run in a loop feels.
    """
    is_terminal = False
    _MARKUP = re.compile(r"\[/?[a-z ]*\]")

    def print(self, text: str = "") -> None:
        print(self._MARKUP.sub("", str(text)), file=sys.stderr)


def stderr_console():
    """rich's Console on a terminal, else plain lines."""
    if not sys.stderr.isatty():
        return PlainConsole()
    from rich.console import Console
    return Console(stderr=True)

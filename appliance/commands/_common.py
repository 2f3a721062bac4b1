"""What many commands share: the --config option and loading it."""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from .. import config as config_mod
from ..store import Store


# Exit statuses (README, "Commands"): scripts tell these apart.
EXIT_OK = 0
EXIT_FAILED = 1          # the input was fine; the operation failed, found nothing, or was declined
EXIT_USAGE = 2           # bad usage or input (argparse's own errors are 2 too)
EXIT_NO_APPLIANCE = 3    # no appliance answers ('si up' is not running, or not here)


class CliError(RuntimeError):
    """Bad usage or input: printed as one line, exit status 2."""
    status = EXIT_USAGE


class OperationFailed(CliError):
    """The operation could not be done (no such host or image, a write or a tool failed): status 1."""
    status = EXIT_FAILED


class NoAppliance(CliError):
    """No appliance answered the command's API call: status 3."""
    status = EXIT_NO_APPLIANCE


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

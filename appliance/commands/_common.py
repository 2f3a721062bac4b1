"""What many commands share: the --config option and loading it."""
from __future__ import annotations

import argparse
import os
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

"""How a list reaches its reader: a table on a terminal, plain lines in a pipe, records with --json.

A table cut to 80 columns and drawn in boxes is for eyes; a script reading `si
hosts list | cut -f2` needs every value whole, tab-separated, one record a line
under one header line. An empty list says so on a terminal instead of drawing
an empty box.
"""
from __future__ import annotations

import json
import sys
from typing import Iterable, Sequence


def add_json_arg(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print the records as JSON")


def add_action(actions, name: str, text: str, func, *positionals: str, json: bool = False):
    """A subcommand's action (si hosts show HOST): --config, --json if it lists or shows, its
    positional arguments (NAME or NAME:METAVAR), the function it runs; returns its parser."""
    from ._common import add_config_arg
    q = actions.add_parser(name, help=text)
    add_config_arg(q)
    if json:
        add_json_arg(q)
    for positional in positionals:
        dest, _, metavar = positional.partition(":")
        q.add_argument(dest, metavar=metavar or None)
    q.set_defaults(func=func)
    return q


def plain(value) -> str:
    return " ".join(str("-" if value is None else value).split())      # no tabs or newlines inside a field


def emit(columns: Sequence[str], rows: Iterable[Sequence], *, records: list | None = None,
         as_json: bool = False, title: str | None = None, empty: str = "none", stream=None) -> None:
    """Print rows under columns. records: what --json prints (default: each row as a dict)."""
    stream = stream or sys.stdout
    rows = [list(r) for r in rows]
    if as_json:
        out = records if records is not None else [dict(zip(columns, r)) for r in rows]
        print(json.dumps(out, indent=2, default=str), file=stream)
        return
    if not stream.isatty():
        print("\t".join(columns), file=stream)
        for r in rows:
            print("\t".join(plain(v) for v in r), file=stream)
        return
    if not rows:
        print(f"{title + ': ' if title else ''}{empty}", file=stream)
        return
    from rich.console import Console
    from rich.table import Table
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for r in rows:
        table.add_row(*(plain(v) for v in r))
    Console(file=stream).print(table)


def print_fields(rows: Sequence[tuple[str, object]], stream=None) -> None:
    """One record as 'key:  value' lines, the values in one column."""
    width = max((len(k) for k, _ in rows), default=0) + 2
    for key, value in rows:
        print(f"{key + ':':{width}}{'-' if value is None else value}", file=stream or sys.stdout)

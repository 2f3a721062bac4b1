"""One way to load jinja2 templates for every generated file: strict and cached.

Strict: an undefined name is an error, never an empty string in a config.
Cached: compiling a template costs more than rendering it (0.15 s of a
`si getimage` went to compiling two), so compiled templates are kept in
jinja2's per-user bytecode cache, keyed by the template's source.
"""
from __future__ import annotations

from functools import cache

import jinja2


@cache
def _bytecode_cache() -> jinja2.BytecodeCache | None:
    try:
        return jinja2.FileSystemBytecodeCache()   # a private (0700) directory under the temp dir
    except (OSError, RuntimeError):               # jinja2 refuses a directory it does not own
        return None


def environment(loader: jinja2.BaseLoader) -> jinja2.Environment:
    return jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              trim_blocks=True, lstrip_blocks=True, autoescape=False,
                              bytecode_cache=_bytecode_cache())

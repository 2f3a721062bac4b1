"""The project's own source files, read from the tree (a copy of the repository may have no git)."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".git", ".venv", "__pycache__", "build", ".pytest_cache", ".cache", "artifacts"}
BUILT = (".pyc", ".so")          # build products, never shipped as source


def source_files(pattern: str, under: tuple[str, ...] = (".",)) -> list[str]:
    """Paths relative to the repository of the files matching `pattern` below `under`."""
    out = []
    for top in under:
        for path in (REPO / top).rglob(pattern):
            rel = path.relative_to(REPO)
            if (path.is_file() and not path.name.endswith(BUILT)
                    and not any(p in SKIP_DIRS or p.endswith(".egg-info") for p in rel.parts)):
                out.append(rel.as_posix())
    return sorted(out)

"""What a test needs from the machine, said as a failure that names the fix (never a skip)."""
from __future__ import annotations

import os

import pytest

from services.debian_packages import MissingProgram, require


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (network namespaces); run the suite as root as the README says")


def require_programs(*programs: str) -> None:
    """Fail naming the Debian packages (from services/debian_packages.py) of absent programs."""
    try:
        require(*programs)
    except MissingProgram as exc:
        pytest.fail(str(exc))

"""Autouse fixtures that keep one test from breaking the machine for the rest."""
from __future__ import annotations

import os
import stat

import pytest


@pytest.fixture(autouse=True)
def dev_null_stays_a_device():
    """A test that replaces /dev/null (an atomic write aimed at it, say) breaks the
    machine for everything after it: put it back and fail that test."""
    yield
    if not stat.S_ISCHR(os.stat("/dev/null").st_mode):
        os.remove("/dev/null")
        os.mknod("/dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.chmod("/dev/null", 0o666)
        pytest.fail("this test turned /dev/null into a regular file")



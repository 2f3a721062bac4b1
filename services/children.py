"""Child processes that die with the appliance process that started them, even when it is SIGKILLed.

Used as subprocess's preexec_fn: an orphaned rsync daemon would keep the port
(a restarted appliance cannot bind), and an orphaned getimage rsync would keep
writing into a version directory the next pull reuses.
"""
from __future__ import annotations

import ctypes
import signal

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent thread that forked it ends."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

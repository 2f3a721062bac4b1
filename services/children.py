"""Child processes that die with the appliance process that started them, even when it is SIGKILLed.

Used as subprocess's preexec_fn: an orphaned rsync daemon would keep the port
(a restarted appliance cannot bind), and an orphaned getimage rsync would keep
writing into a version directory the next pull reuses.
"""
from __future__ import annotations

import asyncio
import ctypes
import os
import signal

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent thread that forked it ends."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


async def spawn(argv: list[str], *, read_stdout: bool = False):
    """An engine as an asyncio child in a process group of its own that dies with us
    (stderr piped for its last words, stdin closed, stdout piped if the caller reads it)."""
    return await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE if read_stdout else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, start_new_session=True, preexec_fn=die_with_parent)


async def end_group(proc, grace: float = 5.0) -> None:
    """End a child's whole process group (what it forked too): SIGTERM, SIGKILL after grace."""
    if proc is None or proc.returncode is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except asyncio.TimeoutError:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await proc.wait()

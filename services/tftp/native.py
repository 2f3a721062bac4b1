"""The compiled lock-step pump (lockstep.c), loaded with ctypes.

setup.sh builds _lockstep.so next to this file. Without it, transfer processes
run the engine's run_lockstep, the same loop in Python (with 32 lock-step
clients on 2 cores: 0.91-1.0 of tftpd-hpa's throughput, against 1.08-1.17
compiled); `available()` says which.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

SOURCE = Path(__file__).with_name("lockstep.c")
LIBRARY = Path(__file__).with_name("_lockstep.so")

_function = None
_why_not = ""


def _load() -> None:
    global _function, _why_not
    if _function is not None or _why_not:
        return
    if not LIBRARY.exists():
        _why_not = f"{LIBRARY.name} is not built (./setup.sh builds it from {SOURCE.name})"
        return
    if LIBRARY.stat().st_mtime < SOURCE.stat().st_mtime:
        _why_not = f"{LIBRARY.name} is older than {SOURCE.name} (./setup.sh rebuilds it)"
        return
    try:
        function = ctypes.CDLL(str(LIBRARY), use_errno=True).si_tftp_lockstep
    except (OSError, AttributeError) as e:
        _why_not = f"{LIBRARY.name} does not load: {e}"
        return
    c_long = ctypes.c_long
    function.argtypes = [ctypes.c_int, ctypes.c_void_p, c_long, c_long, c_long, c_long, ctypes.c_uint,
                         ctypes.c_void_p, c_long, ctypes.POINTER(c_long)]
    function.restype = c_long
    _function = function


def available() -> tuple[bool, str]:
    """Whether the compiled pump loads, and if not, why (one line for the log)."""
    _load()
    return _function is not None, _why_not


class Pump:
    """The compiled loop bound to one connected socket and its receive buffer:
    the `pump` that ReadTransfer.run_compiled calls."""

    def __init__(self, fd: int, buf: bytearray) -> None:
        _load()
        if _function is None:
            raise RuntimeError(_why_not)
        self._fd = fd
        self._recv = (ctypes.c_char * len(buf)).from_buffer(buf)   # pins buf while in use
        self._recv_size = len(buf)
        self._sent = ctypes.c_long()

    def take_sent(self) -> int:
        """Packets sent since the last take, also when a signal handler raised as the
        loop returned (the call's result is then lost, this count is not)."""
        sent, self._sent.value = self._sent.value, 0
        return sent

    def __call__(self, packets: bytearray, slot: int, count: int, tail: int, index: int,
                 block: int) -> int:
        return _function(self._fd, (ctypes.c_char * len(packets)).from_buffer(packets), slot, count,
                         tail, index, block, self._recv, self._recv_size, ctypes.byref(self._sent))

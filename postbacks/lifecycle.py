"""Processes that never outlive the process that started them (Linux parent-death signal).

A service killed with SIGKILL (OOM, a crashed host agent, a test) cannot stop its own
children. Without this, the HTTP server's worker processes would run on orphaned, still
bound to the port and serving, beside the replacement the supervisor starts.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1
# Loaded once, up front: die_with_parent also runs between fork and exec, no place for dlopen.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Ask the kernel to send `signum` to this process when its parent exits (Linux; else nothing)."""
    if _LIBC is None:
        return
    parent = os.getppid()
    _LIBC.prctl(_PR_SET_PDEATHSIG, signum)
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signum)

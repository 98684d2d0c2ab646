"""Cut a child process off the network before it is asked to stop: shut down every socket it holds.

Why: the embedded broker saves its in-memory log on SIGTERM by taking a snapshot while its
connection threads go on answering, so a record acknowledged between the snapshot and the
exit is lost, acknowledged (seen in tests/faults/test_broker_restart.py: acked clicks missing
after a restart, and the ingest's idempotent producer then answered OutOfOrderSequenceNumber).
Apache Kafka's controlled shutdown stops serving before it flushes; this gives the embedded
broker the same order from outside. The process is frozen (SIGSTOP) while its sockets are
taken with pidfd_getfd(2) and shut down, so after it resumes nothing more reaches a client:
every acknowledgement a client got was for a record appended before the snapshot.

Linux only (pidfd_getfd, kernel 5.6+), and only for our own child (ptrace access). Where it
cannot, the caller stops the broker the plain way; `silence` says why.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from pathlib import Path

_SYS_PIDFD_GETFD = 438  # the same number on every Linux architecture (unified syscall table)


class CannotSilence(OSError):
    pass


def silence(pid: int) -> int:
    """Freeze `pid`, shut down all its sockets, and leave it frozen; returns how many were cut.

    The caller sends what it wants delivered on resume (SIGTERM), then SIGCONT. On failure the
    process is resumed and CannotSilence raised.
    """
    if not sys.platform.startswith("linux") or not hasattr(os, "pidfd_open"):
        raise CannotSilence("needs Linux pidfd_getfd")
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        os.kill(pid, signal.SIGSTOP)
        _wait_stopped(pid)  # SIGSTOP is asynchronous: a running thread could still accept()
        pidfd = os.pidfd_open(pid)
        try:
            return sum(_shut_down(libc, pidfd, fd) for fd in _socket_fds(pid))
        finally:
            os.close(pidfd)
    except OSError as exc:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        raise CannotSilence(f"could not cut the sockets of process {pid}: {exc}") from exc


def _wait_stopped(pid: int, timeout_s: float = 2.0) -> None:
    """Until every thread of `pid` is in the stopped state ('T' in /proc/<pid>/task/*/stat)."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = []
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):  # a thread that exited meanwhile
                states.append(Path(f"/proc/{pid}/task/{task}/stat").read_text().rsplit(")", 1)[1].split()[0])
        if all(state in ("T", "t") for state in states):
            return
        if time.monotonic() > deadline:
            raise OSError(f"process {pid} did not stop: thread states {sorted(set(states))}")
        time.sleep(0.001)


def _socket_fds(pid: int) -> list[int]:
    fds = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                fds.append(int(name))
        except OSError:  # closed meanwhile
            continue
    return fds


def _shut_down(libc: ctypes.CDLL, pidfd: int, target_fd: int) -> bool:
    fd = libc.syscall(_SYS_PIDFD_GETFD, pidfd, target_fd, 0)
    if fd < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"pidfd_getfd: {os.strerror(errno)}")
    # Our copy shares the socket with the process's own descriptor: shutting it down here is
    # shutting it down there (a listener stops accepting, a connection gets EOF, writes fail).
    with socket.socket(fileno=fd) as sock:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # not connected (e.g. a socket never used): nothing to cut
            return False
    return True

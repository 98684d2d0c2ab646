"""Request ids: random version-4 UUIDs in hex, read from the kernel 256 at a time.

Why. `uuid.uuid4().hex` asks the kernel for 16 random bytes (a `getrandom` call) and builds
a `UUID` object for every request; in the ingest's profile that was ~5% of its CPU
(docs/benchmarks.md, "The click path's fetches; request ids"). These ids are the same
thing: 122 random bits from `os.urandom` with uuid4's version and variant bits, as 32 hex
characters, so the ids senders get back and the stream's identities keep their form. One
read serves 256 requests.

A forked process must not hand out the ids its parent's pool still holds: the pool is
dropped in the child (`os.register_at_fork`), so each process reads its own.
"""

from __future__ import annotations

import os

_IDS_PER_READ = 256
#: The hex digit of byte 8 with uuid4's variant bits (10xx) set, for each random digit.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


class RequestIds:
    """Call for the next id. Not thread-safe: an ingest process serves from one event loop."""

    __slots__ = ("_at", "_pool")

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def __call__(self) -> str:
        at, pool = self._at, self._pool
        if at >= len(pool):
            pool = self._pool = os.urandom(16 * _IDS_PER_READ)
            at = 0
        self._at = at + 16
        digits = pool[at : at + 16].hex()
        return digits[:12] + "4" + digits[13:16] + _VARIANT[digits[16]] + digits[17:]

    def forget(self) -> None:
        """Drop the unused ids (called in a forked child: they are its parent's too)."""
        self._pool, self._at = b"", 0


request_id = RequestIds()
os.register_at_fork(after_in_child=request_id.forget)

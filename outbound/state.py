"""The recorded state of a delivery, and what a (re)started worker does about it. Pure.

Per delivery, `outbound.deliveries` (compacted, keyed by idempotency key) holds the
latest of:

    sending n    request n is about to go out (recorded, and acknowledged, BEFORE it goes)
    retry n      request n failed; the next one is due at next_attempt_at
    delivered n  request n got a 2xx
    dead n       given up after n requests (the dead-letter record is already written)

`sending` is what makes a crash honest: a delivery whose latest state is `sending` may
or may not have reached the destination, and the worker knows it is in that window
instead of guessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SENDING = "sending"
RETRY = "retry"
DELIVERED = "delivered"
DEAD = "dead"
FINAL = frozenset({DELIVERED, DEAD})


@dataclass(frozen=True, slots=True)
class DeliveryState:
    state: str
    attempt: int  # requests made (for `sending`: including the one that may be on the wire)
    updated_at: float = 0.0  # unix seconds
    next_attempt_at: float | None = None  # unix seconds
    http_status: int | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> DeliveryState:
        """From an outbound_delivery record decoded with millis=True."""
        next_at = record.get("next_attempt_at")
        return cls(
            record["state"],
            record["attempt"],
            record["updated_at"] / 1000,
            None if next_at is None else next_at / 1000,
            record.get("http_status"),
        )


@dataclass(frozen=True, slots=True)
class Resume:
    """Work left on a delivery: `attempts` requests already made; the next may go at `due`."""

    attempts: int
    due: float
    # The last request's answer was never recorded (the worker stopped in between): it may have
    # reached the destination. The publisher's resend_uncertain says what happens next.
    uncertain: bool = False


def resume(state: DeliveryState | None, now: float) -> Resume | None:
    """What to do with a delivery met on the conversions topic (again); None: already decided."""
    if state is None:
        return Resume(0, now)
    if state.state in FINAL:
        return None
    if state.state == RETRY:
        return Resume(state.attempt, state.next_attempt_at if state.next_attempt_at is not None else now)
    return Resume(state.attempt, now, uncertain=True)

"""Conversion statuses and which updates a later postback may make.

Statuses only move forward: pending → hold → approved → rejected (a reversal or
chargeback). A postback whose status does not advance the conversion is a duplicate.
Forward-only is what makes decisions replayable: a postback that did not advance
the status when first seen cannot advance it when re-read after a crash, because
the status can only have moved further on since.
"""

from __future__ import annotations

RANK: dict[str, int] = {"pending": 0, "hold": 1, "approved": 2, "rejected": 3}
#: A postback that says nothing about status reports a confirmed conversion.
DEFAULT_STATUS = "approved"


def status_of(raw_status: str | None) -> str:
    return raw_status if raw_status in RANK else DEFAULT_STATUS


def advances(current: str, new: str) -> bool:
    return RANK[new] > RANK[current]

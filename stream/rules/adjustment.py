"""Advertiser adjustments: an admin's approve, reject or payout change of one conversion.

An adjustment arrives on `postbacks.raw` like any postback (keyed by the conversion's
click id), so it is decided in that click's state, in log order with the sender's own
postbacks, and its result is a new version of the conversion like a status update: the
outbound worker passes it on and the aggregates retract the previous version. Unlike a
sender's update it may move a status back (a rejected conversion approved after a
dispute): it is idempotent by its own id instead, which the state remembers, so a replay
re-emits what it emitted and a retry is a duplicate.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from stream.rules.attribution import Refused
from stream.rules.fx import to_usd

Record = Mapping[str, Any]
ACTIONS = frozenset({"approve", "reject", "payout"})
#: Enrichment keys of an adjusted version: who, why and which adjustment (when: its received_at).
AUDIT_KEYS = ("adjustment_id", "adjusted_by", "adjustment_reason")


def is_adjustment(postback: Record) -> bool:
    return bool(postback.get("adjustment_id"))


def key(postback: Record) -> str:
    """The adjustment's own dedup key in its click's state (no sender policy makes one like it)."""
    return f"adjustment|{postback['adjustment_id']}"


def adjusted(
    previous: Record, postback: Record, offset: int, rates: Mapping[str, Decimal]
) -> dict[str, Any] | Refused:
    """The conversion's next version after `postback`'s adjustment, or why it is refused."""
    action = postback.get("adjustment_action")
    if action not in ACTIONS:
        return Refused("bad_adjustment", f"unknown action {action!r}")
    status, payout, currency, payout_usd = (
        previous["status"], previous["payout"], previous["payout_currency"], previous["payout_usd"]
    )  # fmt: skip
    if action == "approve":
        status = "approved"
    elif action == "reject":
        status = "rejected"
    else:
        payout, currency = postback.get("payout"), postback.get("currency") or "USD"
        if payout is None:
            return Refused("bad_adjustment", "a payout adjustment needs a payout")
        converted = to_usd(payout, currency, rates)
        if converted is None:
            return Refused("unknown_currency", f"no USD rate for {currency}")
        payout_usd = converted[0]
    if status == previous["status"] and payout_usd == previous["payout_usd"] and payout == previous["payout"]:
        return Refused("adjustment_changes_nothing", f"the conversion is already {status} at that payout")
    flags = {k: v for k, v in previous["enrichment"].items() if k == "fraud_flags"}
    return {
        **previous,
        "version": offset,
        "status": status,
        "previous_status": previous["status"],
        "previous_version": previous["version"],
        "previous_revenue_usd": previous["revenue_usd"],
        "previous_payout_usd": previous["payout_usd"],
        "request_id": postback["request_id"],
        "received_at": postback["received_at"],
        "source": postback["source"],
        "payout": payout,
        "payout_currency": currency,
        "payout_usd": payout_usd,
        "enrichment": {**flags, **{k: str(postback.get(k) or "") for k in AUDIT_KEYS}},
    }

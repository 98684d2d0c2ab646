"""Deduplication keys: which postbacks describe the same conversion.

A policy maps a postback (and its click) to a key; two postbacks with the same key
on the same click are one conversion. Policies are chosen per source (sources
file `dedup_policy`) and new ones are registered in `stream.registry`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

Record = Mapping[str, Any]

INSTALL = "install"
_INSTALL_NAMES = frozenset({"", "install", "af_install", "installs", "first_open"})


def event_name(postback: Record) -> str:
    name = postback.get("event_name") or ""
    return INSTALL if name.lower() in _INSTALL_NAMES else str(name)


def is_install(postback: Record) -> bool:
    return event_name(postback) == INSTALL


def per_click(postback: Record, click: Record) -> str:
    """One conversion per click and event (an install, or each distinct event name)."""
    return f"click|{event_name(postback)}"


def per_transaction(postback: Record, click: Record) -> str:
    """Click + transaction id: rebills and upsells with a new id are new conversions."""
    txid = postback.get("transaction_id")
    return f"txn|{txid}" if txid else per_event_occurrence(postback, click)


def per_action(postback: Record, click: Record) -> str:
    """Offer + goal + action id (Affise-style advertiser conversion ids)."""
    action = postback.get("action_id")
    if not action:
        return per_transaction(postback, click)
    return f"action|{click['offer_id']}|{postback.get('goal') or ''}|{action}"


def per_event_occurrence(postback: Record, click: Record) -> str:
    """Click + event name + event time: in-app events with no transaction id."""
    return f"event|{event_name(postback)}|{postback.get('event_time') or ''}"


def auto(postback: Record, click: Record) -> str:
    """Default: installs once per click; events by transaction id, else by name and time."""
    if is_install(postback):
        return per_click(postback, click)
    return per_transaction(postback, click)


def conversion_id(click_id: str, dedup_key: str) -> str:
    """Stable across replays and workers: the same click and key always give the same id."""
    digest = hashlib.blake2b(f"{click_id}\x1f{dedup_key}".encode(), digest_size=16)
    return digest.hexdigest()

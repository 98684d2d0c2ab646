"""Fraud signals on one conversion: pure checks of the postback against its click.

Each returns a `Refused` carrying the signal's reason when it fires; what happens then is
the offer's choice (catalog `[fraud]` / `[offers.<id>.fraud]`: refuse, flag or off), made
in stream/decide.py, so a signal is written once and refused on one offer, flagged on
another. A flag goes into the conversion's `enrichment["fraud_flags"]` (comma-separated
reasons), which ClickHouse counts in `fraud_flags_hourly`.

Signals that need other clicks (click flooding per IP/device, a device converting on a
second click of an offer) are not here: the stream's state is partitioned by click id, so
a worker sees one click's history, not an IP's or a device's (docs/stream.md "Fraud signals").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stream.rules.attribution import Attributed, AttributionRules, Refused

Record = Mapping[str, Any]

CTIT_LONG = "ctit_long"
COUNTRY_MISMATCH = "country_mismatch"

#: A signal's action when neither the offer nor the catalog sets one; anything else refuses.
DEFAULT_ACTIONS: Mapping[str, str] = {CTIT_LONG: "flag", COUNTRY_MISMATCH: "flag"}
FLAGS_KEY = "fraud_flags"


def ctit_long(attributed: Attributed, rules: AttributionRules) -> Refused | None:
    """An install long after its click: click spamming claims organic installs that way."""
    if not attributed.ctit_long:
        return None
    return Refused(
        CTIT_LONG,
        f"install {attributed.click_to_conversion_ms // 1000}s after the click "
        f"(long from {rules.ctit_long_ms // 1000}s)",
    )


def country_mismatch(postback: Record, click: Record) -> Refused | None:
    """The sender's country for the conversion is not the click's (both must be known)."""
    converted, clicked = postback.get("country_code"), click.get("country_code")
    if not converted or not clicked or str(converted).upper() == str(clicked).upper():
        return None
    return Refused(COUNTRY_MISMATCH, f"converted in {converted}, clicked in {clicked}")

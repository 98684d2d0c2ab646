"""Impressions: parse the impression tracker's parameters into an Impression record.

An impression is what view-through attribution needs (README "View-through attribution"):
the offer, publisher, campaign and sub ids as a click has them, an impression id, and the
device's advertising id (`gaid` or `idfa`), which keys `impressions.raw` so the stream can
find the impression when a postback from the same device comes without a known click.
Pure: the caller adds the time, the sender's address and the headers.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from typing import Any

from ingest.clicks import CLICK_FIELDS, parse_fields
from ingest.parsing import MAX_CLICK_ID_CHARS, Refusal
from postbacks.devices import DEVICE_FIELDS, device_key, normalise_device_id

_IMPRESSION_ID = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces: as click ids


def parse_impression(params: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Impression fields, its id (issued here when the tracker sends none) and its device key."""
    record = parse_fields(params, (*CLICK_FIELDS, "impression_id", *DEVICE_FIELDS))
    given = record["impression_id"]
    if given is None:
        record["impression_id"] = secrets.token_urlsafe(16)
    elif len(given) > MAX_CLICK_ID_CHARS or not _IMPRESSION_ID.match(given):
        raise Refusal(
            "bad_impression_id", "impression id must be up to 256 printable ASCII characters", "impression_id"
        )
    for name in DEVICE_FIELDS:
        value = record[name]
        if value is None:
            continue
        normal = normalise_device_id(value)
        if normal is None:
            raise Refusal("bad_device_id", f"{name} must be a non-zero advertising id (a UUID)", name)
        record[name] = normal
    key = device_key(record)
    if key is None:
        raise Refusal("missing_device_id", "gaid or idfa is required (the device key)", "gaid")
    record["device_key"] = key
    return record

"""The device key that joins an impression to a postback for view-through attribution.

Shared by the ingest (it keys `impressions.raw` by it) and the stream (it routes a
postback whose click is unknown to the same key), so both must compute it alike.

Why the advertising ids (GAID on Android, IDFA on iOS) and nothing else: they are what
a postback already carries (postback_raw `gaid`/`idfa`, every MMP preset aliases them)
and what an ad server's impression tracker can fill; they are per device and reset
by the user, not per app. A web `user_id` would need the advertiser to echo an id of
ours that no tracker's postback carries today. The all-zero id (iOS limit-ad-tracking,
Android opt-out) names no one: it is no key, so such a postback is refused as before.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_ZERO = "00000000-0000-0000-0000-000000000000"

#: The record fields that may carry a device key, in the order they are tried.
DEVICE_FIELDS = ("gaid", "idfa")


def normalise_device_id(value: str) -> str | None:
    """An advertising id in canonical form (lower-case UUID), or None when it is none."""
    text = value.strip().lower()
    if not _UUID.match(text) or text == _ZERO:
        return None
    return text


def device_key(record: Mapping[str, Any]) -> str | None:
    """`gaid:<uuid>` or `idfa:<uuid>` from the first advertising id the record carries."""
    for name in DEVICE_FIELDS:
        value = record.get(name)
        if isinstance(value, str) and value:
            normal = normalise_device_id(value)
            if normal is not None:
                return f"{name}:{normal}"
    return None

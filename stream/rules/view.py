"""View-through attribution: which impression, if any, a postback without a known click goes to.

The rules as the MMPs state them (AppsFlyer, Adjust, Singular: "a click always beats an
impression"; an impression counts only inside the view-through lookback window):

- A postback whose click is known is decided on that click (stream/decide.py); impressions
  are never consulted, so a click inside its window always beats an impression.
- Only a postback whose click never came (refused `unknown_click` when its grace ends) and
  that carries a device key (postbacks.devices) is tried against impressions (`route_key`).
- An impression counts when it was seen on that device, for the postback's offer when the
  postback names one (an `offer_id` parameter), no later than the postback was received, and
  no more than the offer's view-through window (default 24 h) before the conversion time.
  The window's edge counts (`elapsed <= window`), as the click windows' do.
- Among those, the latest impression wins (last touch); equal times go to the smaller id,
  so a replay decides the same.

Pure functions: no clock (every time comes from the records), no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from postbacks.devices import device_key
from stream.rules import adjustment
from stream.rules.attribution import Refused, conversion_time

Record = Mapping[str, Any]
HOUR_MS = 3_600_000

CLICK = "click"
VIEW = "view"
#: Impressions kept per device, the latest: a device's whole state is rewritten on each change, so
#: one device key flooded with impressions (the route is public) must not grow it without bound.
MAX_IMPRESSIONS_PER_DEVICE = 100

#: The fields an impression keeps in the view-through table.
STORED_FIELDS = (
    "impression_id", "viewed_at", "offer_id", "publisher_id", "campaign_id", "pub_click_id",
    "sub1", "sub2", "sub3", "sub4", "sub5", "ip", "user_agent", "country_code",
)  # fmt: skip


def route_key(postback: Record) -> str | None:
    """The device key a postback whose click never came is tried under; None: refuse it as before.

    Adjustments name a conversion, not a device: they are never routed.
    """
    if adjustment.is_adjustment(postback):
        return None
    return device_key(postback)


def named_offer(postback: Record) -> str | None:
    """The offer a postback names (its `offer_id` parameter, kept in `extra`), if any."""
    value = (postback.get("extra") or {}).get("offer_id")
    return str(value) if value else None


def choose_impression(
    impressions: Iterable[Record], postback: Record, window_ms: Callable[[str], int]
) -> Record | Refused:
    """The impression this postback converts, or the refusal it gets (`unknown_click`, as before)."""
    received_at = int(postback["received_at"])
    at = conversion_time(postback)
    offer = named_offer(postback)
    inside = [
        impression
        for impression in impressions
        if (offer is None or impression["offer_id"] == offer)
        and int(impression["viewed_at"]) <= received_at
        and 0 <= at - int(impression["viewed_at"]) <= window_ms(impression["offer_id"])
    ]
    if not inside:
        return Refused(
            "unknown_click",
            f"no click {postback['click_id']!r} within the grace period, and no impression of the "
            "device within its offer's view-through window",
        )
    return min(inside, key=lambda i: (-int(i["viewed_at"]), str(i["impression_id"])))


def view_click(impression: Record, click_id: str) -> dict[str, Any]:
    """The impression standing in for the click a postback quoted: what its conversion is built on."""
    return {
        "click_id": click_id,
        "clicked_at": int(impression["viewed_at"]),
        **{
            name: impression.get(name) for name in STORED_FIELDS if name not in ("impression_id", "viewed_at")
        },
        "attribution_type": VIEW,
        "impression_id": impression["impression_id"],
    }


def keep_impression(impressions: list[dict[str, Any]], impression: Record, ttl_ms: int) -> bool:
    """Add an impression (once per id); drop those older than `ttl_ms` before the newest, and all
    but the latest MAX_IMPRESSIONS_PER_DEVICE.

    The newest time seen, not the wall clock, so a replay prunes alike. False: nothing changed.
    """
    if any(i["impression_id"] == impression["impression_id"] for i in impressions):
        return False
    impressions.append({name: impression.get(name) for name in STORED_FIELDS})
    newest = max(int(i["viewed_at"]) for i in impressions)
    impressions[:] = sorted(
        (i for i in impressions if int(i["viewed_at"]) >= newest - ttl_ms),
        key=lambda i: (int(i["viewed_at"]), str(i["impression_id"])),
    )[-MAX_IMPRESSIONS_PER_DEVICE:]
    return True

"""Attribution checks: is this postback a conversion of that click?

Windows and click-to-install time (CTIT) are measured between the click time and
the conversion time the sender reports (never our wall clock), so a decision is
the same whenever it is (re)computed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from stream.rules.dedup import is_install

Record = Mapping[str, Any]
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class AttributionRules:
    window_install_ms: int
    window_event_ms: int
    ctit_min_ms: int
    ctit_long_ms: int


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str
    detail: str


class Attributed(NamedTuple):
    conversion_time: int
    click_to_conversion_ms: int
    ctit_long: bool


def conversion_time(postback: Record) -> int:
    """Installs: install time, else event time; events: event time; else when we received it."""
    candidates: tuple[Any, ...] = (postback.get("event_time"),)
    if is_install(postback):
        candidates = (postback.get("install_time"), postback.get("event_time"))
    for value in candidates:
        if value is not None:
            return int(value)
    return int(postback["received_at"])


def attribute(postback: Record, click: Record, rules: AttributionRules) -> Attributed | Refused:
    if postback.get("blocked_reason"):
        sub = postback.get("blocked_sub_reason")
        detail = f"{postback['blocked_reason']}/{sub}" if sub else str(postback["blocked_reason"])
        return Refused("blocked_by_sender", detail)
    at = conversion_time(postback)
    elapsed = at - int(click["clicked_at"])
    install = is_install(postback)
    window = rules.window_install_ms if install else rules.window_event_ms
    if elapsed > window:
        return Refused("outside_window", f"{elapsed // 1000}s after the click; window {window // 1000}s")
    if not install and elapsed < -rules.ctit_min_ms:
        return Refused("before_click", f"conversion {-elapsed // 1000}s before the click")
    return Attributed(at, elapsed, install and elapsed > rules.ctit_long_ms)

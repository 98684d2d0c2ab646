"""Clicks: parse the click URL's parameters into a Click record and issue its id.

The click id is what every later postback must quote, so it is unguessable (128
random bits): a fraudster cannot mint ids for clicks that never happened.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from ingest.parsing import Refusal, check_text

_CLICK_FIELDS = (
    "offer_id",
    "publisher_id",
    "campaign_id",
    "pub_click_id",
    "sub1",
    "sub2",
    "sub3",
    "sub4",
    "sub5",
)
# Parameters that steer the response, never stored.
_CONTROL_PARAMS = frozenset({"format"})


def new_click_id() -> str:
    return secrets.token_urlsafe(16)


def parse_click(params: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Click fields from parameters (without id, time, ip and headers, which the caller adds)."""
    record: dict[str, Any] = {f: None for f in _CLICK_FIELDS}
    extra: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in params:
        if name in seen:
            raise Refusal("repeated_parameter", f"parameter {name!r} given more than once", name)
        seen.add(name)
        if name in _CONTROL_PARAMS:
            continue
        checked = check_text(value, name)
        if name in record:
            record[name] = checked or None
        else:
            extra[check_text(name, "parameter name", 128)] = checked
    for required in ("offer_id", "publisher_id"):
        if not record[required]:
            raise Refusal(f"missing_{required}", f"{required} is required", required)
    record["extra"] = extra
    return record

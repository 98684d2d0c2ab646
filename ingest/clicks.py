"""Clicks: parse the click URL's parameters into a Click record and issue its id.

The click id is what every later postback must quote, so it is unguessable (128
random bits): a fraudster cannot mint ids for clicks that never happened.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from typing import Any

from ingest.parsing import Refusal, check_text

CLICK_FIELDS = (
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
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")


def new_click_id() -> str:
    return secrets.token_urlsafe(16)


def parse_click(params: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Click fields from parameters (without id, time, ip and headers, which the caller adds)."""
    return parse_fields(params, CLICK_FIELDS)


def parse_fields(params: Iterable[tuple[str, str]], fields: Iterable[str]) -> dict[str, Any]:
    """`fields` from parameters, the rest in `extra`; offer and publisher are required.

    `country` (ISO 3166-1 alpha-2, any case) fills `country_code`, which the fraud signal
    `country_mismatch` compares with the conversion's; any other value of it is kept in
    `extra` as given and the country left empty: a tracker's unfilled geo macro must not
    cost the user's click or impression.
    """
    record: dict[str, Any] = {f: None for f in fields}
    record["country_code"] = None
    extra: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in params:
        if name in seen:
            raise Refusal("repeated_parameter", f"parameter {name!r} given more than once", name)
        seen.add(name)
        if name in _CONTROL_PARAMS:
            continue
        checked = check_text(value, name)
        if name == "country" and _COUNTRY.match(checked.strip()):
            record["country_code"] = checked.strip().upper()
        elif name in record and name != "country_code":
            record[name] = checked or None
        else:
            extra[check_text(name, "parameter name", 128)] = checked
    for required in ("offer_id", "publisher_id"):
        if not record[required]:
            raise Refusal(f"missing_{required}", f"{required} is required", required)
    record["extra"] = extra
    return record

"""Postback templates: a URL or body with `{macro}` placeholders, filled from a conversion.

Pure. A template is compiled once, at start, so a typo (`{clikid}`) is a configuration
error naming the macro instead of a publisher receiving a literal `{clikid}` for a day.
Values are encoded for where they land: percent-encoded in a URL or form body,
JSON-escaped in a JSON body. A value can therefore never change the shape of the
request: a sub id of `x&payout=1000` arrives as one value, not as a second parameter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import quote

Encoding = Literal["url", "json"]

_MACRO = re.compile(r"\{([A-Za-z0-9_]+)\}")

#: Every macro a template may use, with what it is. A value the conversion lacks renders empty.
MACROS: Mapping[str, str] = {
    "clickid": "the publisher's own click id (`pub_click_id` given on the click)",
    "sub1": "sub id 1 given on the click",
    "sub2": "sub id 2",
    "sub3": "sub id 3",
    "sub4": "sub id 4",
    "sub5": "sub id 5",
    "payout": "what the publisher is paid, in `{currency}` (0 when the conversion has no payout)",
    "currency": "currency of `{payout}` (USD when there is no payout)",
    "payout_usd": "the payout in USD",
    "event_name": "install, or the in-app event's name",
    "status": "approved, pending, hold or rejected",
    "txid": "the advertiser's transaction id (empty when it sent none, e.g. installs)",
    "conversion_id": "our stable id of the conversion (the same for all its versions)",
    "version": "the conversion version (grows with each status update)",
    "idempotency_key": "the delivery's key, also sent as the Idempotency-Key header",
    "offer_id": "the offer",
    "campaign_id": "the campaign",
    "publisher_id": "the publisher (this destination)",
    "goal": "the advertiser's goal, if any",
    "country": "ISO country code, if known",
    "timestamp": "conversion time, unix seconds",
}


class UnknownMacroError(ValueError):
    """A template names a macro that does not exist; the message names it and lists the known ones."""

    def __init__(self, macro: str) -> None:
        super().__init__(f"unknown macro {{{macro}}} (known: {', '.join(sorted(MACROS))})")
        self.macro = macro


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled template: literal text and macro names, alternating."""

    text: str
    encoding: Encoding
    # (literal text before the macro, macro name or "" after the last literal)
    parts: tuple[tuple[str, str], ...]

    @property
    def macros(self) -> frozenset[str]:
        return frozenset(name for _, name in self.parts if name)

    def render(self, values: Mapping[str, str]) -> str:
        encode = _ENCODERS[self.encoding]
        return "".join(
            literal + (encode(values.get(name, "")) if name else "") for literal, name in self.parts
        )


def compile_template(text: str, encoding: Encoding = "url") -> Template:
    """Parse `text`; raises UnknownMacroError for a `{name}` that is not a macro.

    Only `{` + letters, digits, underscores + `}` is a placeholder, so JSON braces in a
    body template (`{"id": "{clickid}"}`) stay literal.
    """
    parts: list[tuple[str, str]] = []
    position = 0
    for match in _MACRO.finditer(text):
        name = match[1]
        if name not in MACROS:
            raise UnknownMacroError(name)
        parts.append((text[position : match.start()], name))
        position = match.end()
    parts.append((text[position:], ""))
    return Template(text, encoding, tuple(parts))


def _url(value: str) -> str:
    return quote(value, safe="")


def _json(value: str) -> str:
    return json.dumps(value)[1:-1]  # the escaped content of a JSON string, without its quotes


_ENCODERS = {"url": _url, "json": _json}


def macro_values(conversion: Mapping[str, Any], idempotency_key: str) -> dict[str, str]:
    """Every macro's value for one conversion version (raw; templates encode them)."""
    payout = conversion.get("payout")
    return {
        "clickid": _text(conversion.get("pub_click_id")),
        **{f"sub{i}": _text(conversion.get(f"sub{i}")) for i in range(1, 6)},
        "payout": _amount(payout if payout is not None else Decimal(0)),
        "currency": _text(conversion.get("payout_currency")) if payout is not None else "USD",
        "payout_usd": _amount(conversion.get("payout_usd")),
        "event_name": _text(conversion.get("event_name")),
        "status": _text(conversion.get("status")),
        "txid": _text(conversion.get("transaction_id")),
        "conversion_id": _text(conversion.get("conversion_id")),
        "version": _text(conversion.get("version")),
        "idempotency_key": idempotency_key,
        "offer_id": _text(conversion.get("offer_id")),
        "campaign_id": _text(conversion.get("campaign_id")),
        "publisher_id": _text(conversion.get("publisher_id")),
        "goal": _text(conversion.get("goal")),
        "country": _text(conversion.get("country_code")),
        "timestamp": _unix_seconds(conversion.get("conversion_time")),
    }


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _amount(value: Any) -> str:
    """Plain decimal notation without trailing zeros: 1.500000 -> "1.5", 100 -> "100" (never 1E+2)."""
    if value is None:
        return ""
    return format(Decimal(value).normalize(), "f")


def _unix_seconds(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return str(int(value.timestamp()))
    return str(int(value) // 1000)  # unix milliseconds

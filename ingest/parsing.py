"""Turn request parameters into a canonical postback record, or a precise refusal.

Pure functions only: no I/O, no clock (the caller passes `now_ms`), so every rule is
unit-tested with vendors' real URLs and fuzzed without a server. A refusal is a
`Refusal` carrying a machine-readable reason, which the HTTP layer turns into a 4xx
and the rejected topic keeps.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from ingest.aliases import CANONICAL_STATUSES, AliasMap
from ingest.currencies import ISO_4217

Params = list[tuple[str, str]]

MAX_VALUE_CHARS = 1024
MAX_CLICK_ID_CHARS = 256
MAX_EVENT_VALUE_CHARS = 16 * 1024
MAX_JSON_DEPTH = 32
MAX_AMOUNT = Decimal("1e12")
AMOUNT_QUANTUM = Decimal("0.000001")  # the Avro/ClickHouse scale: 6 decimals
# Event times outside [2000-01-01, now + 1 day] are typos or unit mistakes, not conversions.
MIN_TIME_MS = 946_684_800_000
FUTURE_SLACK_MS = 86_400_000

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CLICK_ID = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")


@dataclass(frozen=True, slots=True)
class Refusal(Exception):
    """A postback the pipeline will not accept, with the reason it tells the sender."""

    reason: str
    detail: str
    field: str | None = None
    status: int = 400

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


def parse_query(raw: bytes | str, max_params: int) -> Params:
    """Parse a query string or form body; invalid UTF-8 and floods are refusals, not crashes.

    Most postbacks carry nothing to decode (no `%`, no `+`); those are split directly,
    which gives what parse_qsl gives at a fraction of its cost on the ingest hot path.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        if "%" not in text and "+" not in text:
            return _split_plain(text, max_params)
        return parse_qsl(
            text, keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=max_params
        )
    except UnicodeDecodeError as exc:
        raise Refusal("invalid_encoding", "parameters are not valid UTF-8 after percent-decoding") from exc
    except ValueError as exc:
        raise Refusal("too_many_parameters", f"more than {max_params} parameters") from exc


def _split_plain(text: str, max_params: int) -> Params:
    """parse_qsl(keep_blank_values=True) for text with nothing percent- or plus-encoded."""
    if (text.count("&") + 1 if text else 0) > max_params:
        raise ValueError("Max number of fields exceeded")
    params: Params = []
    for part in text.split("&"):
        if part:
            name, _, value = part.partition("=")
            params.append((name, value))
    return params


def parse_json_body(raw: bytes, max_params: int) -> Params:
    """A flat JSON object of macros; nested values are allowed only as event JSON."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Refusal("malformed_body", "body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise Refusal("malformed_body", "JSON body must be an object of parameters")
    if len(data) > max_params:
        raise Refusal("too_many_parameters", f"more than {max_params} parameters")
    params: Params = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, bool):
            params.append((key, "true" if value else "false"))
        elif isinstance(value, str):
            params.append((key, value))
        elif isinstance(value, int | float):
            params.append((key, json.dumps(value)))
        else:  # object or array: only meaningful as event JSON, checked by the normaliser
            params.append((key, json.dumps(value, separators=(",", ":"))))
    return params


def parse_amount(raw: str, name: str) -> Decimal:
    try:
        value = Decimal(raw.strip())
    except InvalidOperation as exc:
        raise Refusal("bad_number", f"{name} is not a number: {raw[:40]!r}", name) from exc
    if not value.is_finite():
        raise Refusal("bad_number", f"{name} must be finite", name)
    if value < 0:
        raise Refusal("bad_number", f"{name} must not be negative", name)
    if value >= MAX_AMOUNT:
        raise Refusal("bad_number", f"{name} is implausibly large", name)
    return value.quantize(AMOUNT_QUANTUM, rounding=ROUND_HALF_EVEN)


def parse_time_ms(raw: str, name: str, now_ms: int) -> int:
    """Unix seconds or milliseconds, `YYYY-MM-DD HH:MM:SS[.fff]` (UTC, AppsFlyer) or ISO 8601."""
    text = raw.strip()
    millis: int | None = None
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if math.isfinite(number):
        # 13-digit values are milliseconds (AppsFlyer *_ms macros, JS trackers); else seconds.
        millis = int(number) if number >= 1e11 else int(number * 1000)
    else:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:
            raise Refusal("bad_time", f"{name} is not a timestamp: {text[:40]!r}", name) from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        millis = int(parsed.timestamp() * 1000)
    if not MIN_TIME_MS <= millis <= now_ms + FUTURE_SLACK_MS:
        raise Refusal("bad_time", f"{name} is out of range: {text[:40]!r}", name)
    return millis


def parse_bool(raw: str, name: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"true", "1", "yes"}:
        return True
    if lowered in {"false", "0", "no", ""}:
        return False
    raise Refusal("bad_boolean", f"{name} must be true or false", name)


def check_event_value(raw: str, name: str) -> str:
    if len(raw) > MAX_EVENT_VALUE_CHARS:
        raise Refusal("value_too_long", f"{name} exceeds {MAX_EVENT_VALUE_CHARS} characters", name)
    if _json_depth_exceeds(raw, MAX_JSON_DEPTH):
        raise Refusal("malformed_event_value", f"{name} nests deeper than {MAX_JSON_DEPTH}", name)
    try:
        decoded = json.loads(raw)
    except ValueError as exc:
        raise Refusal("malformed_event_value", f"{name} is not valid JSON", name) from exc
    if not isinstance(decoded, dict | list):
        raise Refusal("malformed_event_value", f"{name} must be a JSON object or array", name)
    return raw


def _json_depth_exceeds(text: str, limit: int) -> bool:
    """Bracket depth, counted before json.loads so hostile nesting never reaches the parser."""
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def check_text(value: str, name: str, limit: int = MAX_VALUE_CHARS) -> str:
    if len(value) > limit:
        raise Refusal("value_too_long", f"{name} exceeds {limit} characters", name)
    if _CONTROL.search(value):
        raise Refusal("bad_value", f"{name} contains control characters", name)
    return value


@dataclass(frozen=True, slots=True)
class NormaliseRules:
    """What one source's parameters mean: its alias map, status words and secret names.

    `default_event`: the event a postback that names none reports (AppsFlyer's install
    postbacks carry no event name: they are installs); None leaves it unnamed, which the
    stream counts as a plain conversion, never an install.
    """

    aliases: AliasMap
    statuses: Mapping[str, str]
    secret_params: frozenset[str] = frozenset()
    default_event: str | None = None


def normalise_postback(
    params: Iterable[tuple[str, str]], rules: NormaliseRules, now_ms: int
) -> dict[str, Any]:
    """Canonical fields of a postback (the parameter part of the PostbackRaw record).

    Unknown parameters go to `extra` so analysts keep them; secret parameters are
    dropped here so they can never reach Kafka or ClickHouse.
    """
    canonical: dict[str, str] = {}
    extra: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in params:
        if name in seen:
            raise Refusal("repeated_parameter", f"parameter {name!r} given more than once", name)
        seen.add(name)
        if name.strip().lower() in rules.secret_params:  # `Token=` is as secret as `token=`
            continue
        target = rules.aliases.get(name)
        if target is None:
            extra[check_text(name, "parameter name", 128)] = check_text(value, name)
        elif target in canonical:
            raise Refusal("repeated_parameter", f"{target} given by two parameters", name)
        else:
            canonical[target] = value

    record: dict[str, Any] = {"extra": extra}
    click_id = canonical.pop("click_id", "").strip()
    if not click_id:
        raise Refusal("missing_click_id", "the click id parameter is missing or empty", "click_id")
    if len(click_id) > MAX_CLICK_ID_CHARS or not _CLICK_ID.match(click_id):
        raise Refusal("bad_click_id", "click id must be up to 256 printable ASCII characters", "click_id")
    record["click_id"] = click_id

    for name, value in canonical.items():
        record[name] = _convert(name, value, rules, now_ms)
    if record.get("event_name") is None and rules.default_event:
        record["event_name"] = rules.default_event
    if (record.get("payout") is not None or record.get("revenue") is not None) and not record.get("currency"):
        record["currency"] = "USD"  # the convention of every tracker we alias: amounts default to USD
    return record


def _convert(name: str, value: str, rules: NormaliseRules, now_ms: int) -> Any:
    if value == "" and name != "event_value":
        return None  # an unfilled macro is an absent value, not an error
    if name in {"payout", "revenue"}:
        return parse_amount(value, name)
    if name in {"event_time", "install_time"}:
        return parse_time_ms(value, name, now_ms)
    if name in {"is_retargeting", "is_attributed"}:
        return parse_bool(value, name)
    if name == "event_value":
        return check_event_value(value, name) if value else None
    if name == "currency":
        code = value.strip().upper()
        if code not in ISO_4217:
            raise Refusal("unknown_currency", f"not an ISO 4217 currency code: {value[:10]!r}", name)
        return code
    if name == "country_code":
        if not _COUNTRY.match(value.strip()):
            raise Refusal("bad_country", "country_code must be two letters (ISO 3166-1)", name)
        return value.strip().upper()
    if name == "status":
        status = rules.statuses.get(value.strip().lower(), value.strip().lower())
        if status not in CANONICAL_STATUSES:
            raise Refusal("bad_status", f"unknown status {value[:20]!r}", name)
        return status
    return check_text(value, name)

"""The admin API's one request: an advertiser adjustment of a conversion, parsed and checked.

`POST /conversions/{conversion_id}/status` with `Authorization: Bearer <admin token>` and a
JSON body `{"adjustment_id", "click_id", "action": "approve"|"reject"|"payout", "payout",
"currency", "reason"}`. The token's name in the sources file's `[admin.tokens]` is who made
the change, the required `reason` is why, the receipt time is when; the record goes to
`postbacks.raw` keyed by the click id, so the stream decides it in that click's state
(stream/rules/adjustment.py). The click id is part of the request because the stream's
state is keyed by it and a conversion id (a hash) does not reveal it; `postbacks sql`
shows both. Pure: no I/O, no clock.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

from ingest.aliases import CANONICAL_FIELDS
from ingest.currencies import ISO_4217
from ingest.parsing import MAX_CLICK_ID_CHARS, Refusal, check_text, parse_amount

PREFIX = "/conversions/"
SUFFIX = "/status"
SOURCE = "admin"
ACTIONS = frozenset({"approve", "reject", "payout"})
_CONVERSION_ID = re.compile(r"^[0-9a-f]{32}$")  # stream/rules/dedup.py conversion_id: 16 bytes, hex
_CLICK_ID = re.compile(r"^[\x21-\x7e]+$")
_FIELDS = frozenset({"adjustment_id", "click_id", "action", "payout", "currency", "reason"})


def conversion_id_of(path: str) -> str:
    """The conversion id in the path; anything that cannot be one is an unknown conversion (404)."""
    if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
        raise Refusal("not_found", "the admin API is POST /conversions/{conversion_id}/status", None, 404)
    conversion_id = path[len(PREFIX) : -len(SUFFIX)]
    if not _CONVERSION_ID.match(conversion_id):
        raise Refusal("unknown_conversion", "a conversion id is 32 lower-case hex digits", None, 404)
    return conversion_id


def admin_name(tokens: Mapping[str, str], authorization: str | None) -> str:
    """Who is asking: the name of the admin token in the Authorization header."""
    if not tokens:
        raise Refusal("admin_disabled", "no [admin.tokens] in the sources file", None, 403)
    scheme, _, given = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Refusal("auth_missing", "Authorization: Bearer <admin token> is required", None, 401)
    given_bytes, who = given.strip().encode(), None
    for name, token in tokens.items():  # every token compared, no early exit
        if hmac.compare_digest(given_bytes, token.encode()):
            who = name
    if who is None:
        raise Refusal("auth_failed", "admin token does not match", None, 403)
    return who


def parse_adjustment(body: bytes, content_type: str) -> dict[str, Any]:
    """The adjustment's fields from its JSON body, each checked; a precise refusal otherwise."""
    if content_type != "application/json":
        raise Refusal("unsupported_media_type", "the admin API takes application/json", None, 415)
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Refusal("malformed_body", "body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise Refusal("malformed_body", "body must be a JSON object")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise Refusal("bad_value", f"unknown fields {unknown[:5]}", unknown[0])
    text = {k: v for k, v in data.items() if v is not None}
    for name, value in text.items():
        if not isinstance(value, str) and not (name == "payout" and isinstance(value, int | float)):
            raise Refusal("bad_value", f"{name} must be a string", name)
    for required in ("adjustment_id", "click_id", "action", "reason"):
        if not str(text.get(required, "")).strip():
            raise Refusal(f"missing_{required}", f"{required} is required", required)
    click_id = str(text["click_id"]).strip()
    if len(click_id) > MAX_CLICK_ID_CHARS or not _CLICK_ID.match(click_id):
        raise Refusal("bad_click_id", "click id must be up to 256 printable ASCII characters", "click_id")
    action = str(text["action"])
    if action not in ACTIONS:
        raise Refusal("bad_action", f"action must be one of {sorted(ACTIONS)}", "action")
    record: dict[str, Any] = {
        "click_id": click_id,
        "adjustment_id": check_text(str(text["adjustment_id"]), "adjustment_id", 128),
        "adjustment_action": action,
        "adjustment_reason": check_text(str(text["reason"]), "reason"),
        "payout": None,
        "currency": None,
    }
    if action == "payout":
        if "payout" not in text:
            raise Refusal("missing_payout", "a payout adjustment needs payout", "payout")
        record["payout"] = parse_amount(str(text["payout"]), "payout")
        currency = str(text.get("currency") or "USD").strip().upper()
        if currency not in ISO_4217:
            raise Refusal("unknown_currency", f"not an ISO 4217 currency code: {currency[:10]!r}", "currency")
        record["currency"] = currency
    elif "payout" in text or "currency" in text:
        raise Refusal("bad_value", "payout and currency belong to a payout adjustment", "payout")
    return record


def adjustment_record(
    fields: Mapping[str, Any],
    conversion_id: str,
    who: str,
    *,
    request_id: str,
    received_at: int,
    method: str,
    sender_ip: str,
) -> dict[str, Any]:
    """The postbacks.raw record (PostbackRaw v2) of an accepted adjustment."""
    record: dict[str, Any] = dict.fromkeys(CANONICAL_FIELDS)
    record.update(fields)
    record.update(
        request_id=request_id,
        received_at=received_at,
        source=SOURCE,
        method=method,
        sender_ip=sender_ip,
        extra={},
        adjustment_conversion_id=conversion_id,
        adjusted_by=who,
    )
    return record

"""The ingest's OpenAPI description (`GET /openapi.json`): every route, every answer, every refusal reason.

Senders' developers read it to know what a 4xx means; `tests/integration/test_openapi.py` runs
schemathesis against the live ingest with it (no 5xx, every answer as described), and a unit test
checks that every `Refusal(...)` the code can raise is listed here with its status.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

# reason -> description, by route and HTTP status. The statuses are the code's (ingest/*.py).
_PARAMETERS_400 = {
    "invalid_encoding": "parameters are not valid UTF-8 after percent-decoding",
    "too_many_parameters": "more parameters than INGEST_MAX_PARAMS",
    "repeated_parameter": "a parameter (or two aliases of one field) given more than once",
    "value_too_long": "a value longer than its limit (1024 characters; event_value 16 KiB)",
    "bad_value": "a value with control characters",
}
POSTBACK_REFUSALS: Mapping[int, Mapping[str, str]] = {
    400: {
        **_PARAMETERS_400,
        "malformed_body": "a JSON body that is not an object of parameters",
        "missing_click_id": "no click id parameter, or an empty one",
        "bad_click_id": "a click id that is not 1-256 printable ASCII characters",
        "bad_number": "payout or revenue not a finite, non-negative number below 1e12",
        "bad_time": "event_time or install_time not a timestamp, or out of range",
        "bad_boolean": "is_retargeting or is_attributed not true/false",
        "malformed_event_value": "event_value not a JSON object or array (or nested too deep)",
        "unknown_currency": "currency not an ISO 4217 code",
        "bad_country": "country_code not two letters",
        "bad_status": "a status word the source's preset does not know",
    },
    401: {
        "auth_missing": "no token parameter, or no signature and timestamp headers (HMAC sources)",
        "auth_failed": "an HMAC timestamp that is not unix seconds",
        "signature_expired": "an HMAC timestamp too far from now (replay protection)",
    },
    403: {
        "auth_failed": "a token or signature that does not match",
        "ip_not_allowed": "a sender address outside the source's allow-list",
    },
    404: {"unknown_source": "no source of that name in the sources file"},
    408: {"request_timeout": "the body did not arrive within INGEST_BODY_TIMEOUT_S"},
    413: {"body_too_large": "a body larger than INGEST_MAX_BODY_BYTES"},
    415: {"unsupported_media_type": "a POST body that is neither form-encoded nor JSON"},
}
CLICK_REFUSALS: Mapping[int, Mapping[str, str]] = {
    400: {
        **_PARAMETERS_400,
        "missing_offer_id": "no offer_id",
        "missing_publisher_id": "no publisher_id",
    },
    404: {"unknown_offer": "an offer not in the catalog (CATALOG_FILE restricts offers)"},
}
IMPRESSION_REFUSALS: Mapping[int, Mapping[str, str]] = {
    400: {
        **CLICK_REFUSALS[400],
        "bad_impression_id": "an impression id that is not 1-256 printable ASCII characters",
        "bad_device_id": "a gaid or idfa that is not a UUID, or the all-zero id (no consent to track)",
        "missing_device_id": "neither gaid nor idfa: view-through needs the device the postback will name",
    },
    404: CLICK_REFUSALS[404],
}
ADMIN_REFUSALS: Mapping[int, Mapping[str, str]] = {
    400: {
        "malformed_body": "not a JSON object",
        "bad_value": "an unknown field, a non-string value, text with control characters, or payout/currency "
        "on an approve or reject",
        "value_too_long": "adjustment_id over 128 characters or reason over 1024",
        "missing_adjustment_id": "no adjustment_id (the client's idempotency key)",
        "missing_click_id": "no click_id (the stream's state is keyed by it)",
        "missing_action": "no action",
        "missing_reason": "no reason (every adjustment says why)",
        "bad_click_id": "a click id that is not 1-256 printable ASCII characters",
        "bad_action": "an action other than approve, reject or payout",
        "missing_payout": "a payout action without payout",
        "bad_number": "payout not a finite, non-negative number below 1e12",
        "unknown_currency": "currency not an ISO 4217 code",
    },
    401: {"auth_missing": "no Authorization: Bearer <admin token>"},
    403: {
        "admin_disabled": "the sources file has no [admin.tokens]",
        "auth_failed": "an admin token that does not match",
    },
    404: {
        "not_found": "a path under /conversions/ other than /conversions/{conversion_id}/status",
        "unknown_conversion": "a conversion id that is not 32 lower-case hex digits (a well-formed id the "
        "stream does not know is refused there, on postbacks.rejected)",
    },
    413: {"body_too_large": "a body larger than INGEST_MAX_BODY_BYTES"},
    415: {"unsupported_media_type": "a body that is not application/json"},
}

# Printable text: control characters are refused (`bad_value`).
_TEXT = {"type": "string", "maxLength": 1024, "pattern": "^[^\\x00-\\x1f\\x7f]*$"}
_AMOUNT = {"type": "string", "pattern": "^[0-9]{1,12}(\\.[0-9]{1,6})?$", "example": "1.50"}


def _param(
    name: str, description: str, schema: Mapping[str, Any] | None = None, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": dict(schema or _TEXT),
    }


_POSTBACK_PARAMS = [
    _param(
        "clickid",
        "the click id the click answered (aliases per preset: subid, cid, ...); missing: `missing_click_id`",
        {"type": "string", "pattern": "^[\\x21-\\x7e]{1,256}$", "example": "Ab3xY9"},
    ),
    _param("event_name", "install, purchase, ... (alias: event)"),
    _param("txid", "the advertiser's transaction id (alias: transaction_id)"),
    _param("payout", "what the advertiser pays for this conversion", _AMOUNT),
    _param("revenue", "the conversion's revenue", _AMOUNT),
    _param(
        "currency",
        "ISO 4217 code (default USD)",
        {"type": "string", "pattern": "^[A-Z]{3}$", "example": "EUR"},
    ),
    _param(
        "status",
        "approved, pending, rejected, hold (and the preset's words for them)",
        {"type": "string", "enum": ["approved", "pending", "rejected", "hold"]},
    ),
    _param(
        "event_time",
        "unix seconds or milliseconds, or ISO 8601",
        {"type": "string", "pattern": "^1[0-9]{9}$"},
    ),
]
_CLICK_PARAMS = [
    _param(
        "offer_id", "the offer clicked", {**_TEXT, "minLength": 1, "pattern": "^[^\\x00-\\x20\\x7f]+$"}, True
    ),
    _param(
        "publisher_id",
        "the publisher who brought the click",
        {**_TEXT, "minLength": 1, "pattern": "^[^\\x00-\\x20\\x7f]+$"},
        True,
    ),
    _param("campaign_id", "campaign"),
    _param("pub_click_id", "the publisher's own click id, quoted back in its outbound postback"),
    *(_param(f"sub{i}", f"free sub-parameter {i}") for i in range(1, 6)),
    _param(
        "country",
        "the user's country, ISO 3166-1 alpha-2 (any other value is kept in extra, the country left empty)",
    ),
    _param(
        "format",
        "json: answer 200 with the click id instead of a redirect",
        {"type": "string", "enum": ["json"]},
    ),
]
_UUID = {"type": "string", "pattern": "^[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}$"}
_IMPRESSION_PARAMS = [
    *(p for p in _CLICK_PARAMS if p["name"] != "format"),
    _param(
        "impression_id",
        "the ad server's impression id (a repeat is stored once); issued by ingest when absent",
        {"type": "string", "pattern": "^[\\x21-\\x7e]{1,256}$"},
    ),
    _param("gaid", "Google advertising id of the device (gaid or idfa is required)", _UUID),
    _param("idfa", "Apple advertising id of the device (gaid or idfa is required)", _UUID),
]


def _json(schema_ref: str, description: str, headers: Mapping[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}},
    }
    if headers:
        response["headers"] = dict(headers)
    return response


def _refusal(reasons: Mapping[str, str], stored: bool) -> dict[str, Any]:
    listed = "; ".join(f"`{reason}`: {text}" for reason, text in reasons.items())
    where = " Kept on postbacks.rejected with the request." if stored else ""
    return {
        "description": f"Refused. {listed}.{where}",
        "content": {
            "application/json": {
                "schema": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Rejected"},
                        {
                            "type": "object",
                            "properties": {"reason": {"type": "string", "enum": list(reasons)}},
                        },
                    ]
                }
            }
        },
    }


def _common(allow: str) -> dict[str, Any]:
    retry_after = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    allow_header = {"Allow": {"schema": {"type": "string", "example": allow}}}
    return {
        "405": _json("Error", "Method not allowed (`method_not_allowed`)", allow_header),
        "500": _json("Error", "A bug of ours (`internal_error`), never the sender's input: retry later"),
        "503": _json(
            "Unavailable", "Kafka did not acknowledge in time (`kafka_unavailable`): retry", retry_after
        ),
    }


def _postback_operation(method: str, with_source: bool, default_source: str) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": _json("Accepted", "Accepted: the record is in Kafka (acknowledged by the broker)"),
        **{str(status): _refusal(reasons, stored=True) for status, reasons in POSTBACK_REFUSALS.items()},
        "429": _json(
            "RateLimited",
            "The source is over its rate limit (`rate_limited`): not recorded; retry after Retry-After",
            {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
        ),
        **_common("GET, POST"),
    }
    operation: dict[str, Any] = {
        "summary": f"A conversion postback ({method}){' for a named source' if with_source else ''}",
        "operationId": f"postback_{method.lower()}{'_source' if with_source else ''}",
        "parameters": [*_POSTBACK_PARAMS],
        "responses": responses,
        # By source: a token parameter, an HMAC signature with its timestamp, or nothing.
        "security": [{"token": []}, {"hmac": [], "hmac_timestamp": []}, {}],
    }
    if with_source:
        operation["parameters"].insert(
            0,
            {
                "name": "source",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$", "example": default_source},
                "description": "a [sources.<name>] of the sources file",
            },
        )
    if method == "POST":
        # POST carries the fields in its body (the token may stay in the query, see security).
        operation["parameters"] = [p for p in operation["parameters"] if p["in"] == "path"]
        fields = {
            "type": "object",
            "properties": {
                p["name"]: {**p["schema"], "description": p["description"]} for p in _POSTBACK_PARAMS
            },
            "additionalProperties": False,
            "description": "other parameters are accepted too and kept in the record's `extra`",
        }
        operation["requestBody"] = {
            "required": False,
            "description": "the postback's fields, form-encoded or a flat JSON object (a field given both "
            "in the query and the body is `repeated_parameter`)",
            "content": {
                "application/x-www-form-urlencoded": {"schema": fields},
                "application/json": {"schema": fields},
            },
        }
    return operation


def _admin_operation() -> dict[str, Any]:
    return {
        "summary": "An advertiser adjustment: approve, reject or re-price a conversion (a new version)",
        "operationId": "adjust_conversion",
        "parameters": [
            {
                "name": "conversion_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                "description": "the conversion's id (conversions.attributed, ClickHouse `conversions`)",
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["adjustment_id", "click_id", "action", "reason"],
                        "properties": {
                            "adjustment_id": {**_TEXT, "maxLength": 128},
                            "click_id": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,256}$"},
                            "action": {"type": "string", "enum": ["approve", "reject", "payout"]},
                            "payout": _AMOUNT,
                            "currency": {"type": "string", "pattern": "^[A-Za-z]{3}$"},
                            "reason": _TEXT,
                        },
                        "additionalProperties": False,
                    }
                }
            },
        },
        "responses": {
            "202": _json("Accepted", "Accepted: the adjustment is in Kafka; the stream decides it"),
            **{str(status): _refusal(reasons, stored=True) for status, reasons in ADMIN_REFUSALS.items()},
            **_common("POST"),
        },
        "security": [{"admin": []}],
    }


def _click_operation() -> dict[str, Any]:
    return {
        "summary": "A click: recorded on clicks.raw, answered with a redirect to the offer or its click id",
        "operationId": "click",
        "parameters": _CLICK_PARAMS,
        "responses": {
            "200": _json("Recorded", "Recorded (no landing page for the offer, or format=json)"),
            "302": _json(
                "Recorded",
                "Recorded; redirect to the offer's landing page",
                {"Location": {"schema": {"type": "string"}}},
            ),
            **{str(status): _refusal(reasons, stored=False) for status, reasons in CLICK_REFUSALS.items()},
            **_common("GET"),
        },
    }


def _impression_operation() -> dict[str, Any]:
    return {
        "summary": "An ad impression, for view-through attribution: recorded on impressions.raw by device",
        "operationId": "impression",
        "parameters": _IMPRESSION_PARAMS,
        "responses": {
            "200": _json("ImpressionRecorded", "Recorded (acknowledged by Kafka)"),
            **{
                str(status): _refusal(reasons, stored=True) for status, reasons in IMPRESSION_REFUSALS.items()
            },
            **_common("GET"),
        },
    }


def _schemas() -> dict[str, Any]:
    text = {"type": "string"}
    return {
        "Accepted": {
            "type": "object",
            "required": ["status", "request_id"],
            "properties": {"status": {"type": "string", "enum": ["accepted"]}, "request_id": text},
        },
        "Recorded": {
            "type": "object",
            "required": ["status", "click_id"],
            "properties": {"status": {"type": "string", "enum": ["recorded"]}, "click_id": text},
        },
        "ImpressionRecorded": {
            "type": "object",
            "required": ["status", "impression_id"],
            "properties": {"status": {"type": "string", "enum": ["recorded"]}, "impression_id": text},
        },
        "Rejected": {
            "type": "object",
            "required": ["status", "reason", "detail"],
            "properties": {
                "status": {"type": "string", "enum": ["rejected"]},
                "reason": text,
                "detail": text,
                "field": {"type": "string", "nullable": True},
                "request_id": {
                    "type": "string",
                    "description": "postbacks only: its row in postbacks.rejected",
                },
            },
        },
        "RateLimited": {
            "type": "object",
            "required": ["status", "reason", "detail"],
            "properties": {
                "status": {"type": "string", "enum": ["rate_limited"]},
                "reason": {"type": "string", "enum": ["rate_limited"]},
                "detail": text,
            },
        },
        "Unavailable": {
            "type": "object",
            "required": ["status", "reason"],
            "properties": {
                "status": {"type": "string", "enum": ["unavailable"]},
                "reason": {"type": "string", "enum": ["kafka_unavailable"]},
                "detail": text,
            },
        },
        "Error": {
            "type": "object",
            "required": ["status", "reason"],
            "properties": {
                "status": {"type": "string", "enum": ["error"]},
                "reason": {"type": "string", "enum": ["method_not_allowed", "not_found", "internal_error"]},
            },
        },
        "Health": {
            "type": "object",
            "required": ["status", "kafka"],
            "properties": {
                "status": {"type": "string", "enum": ["ok", "starting"]},
                "kafka": {"type": "boolean"},
            },
        },
    }


def _get_only(summary: str, operation_id: str, responses: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "operationId": operation_id,
            "responses": {**responses, "405": _common("GET")["405"]},
        }
    }


def spec(default_source: str = "default", servers: Sequence[str] = ()) -> dict[str, Any]:
    """The OpenAPI 3.0 document of the ingest."""
    text_body = {"text/plain": {"schema": {"type": "string"}}}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "postback-pipeline ingest",
            "version": "1",
            "description": (
                "Postbacks and clicks in over HTTP. A 2xx means the record is acknowledged by Kafka. "
                "Every postback refusal is a 4xx with a JSON `reason` and is kept on postbacks.rejected; "
                "vendor macro names (aliases) per source preset are in docs/sending.md ('Vendor macros')."
            ),
        },
        "servers": [{"url": url} for url in servers],
        "paths": {
            "/postback": {
                "get": _postback_operation("GET", False, default_source),
                "post": _postback_operation("POST", False, default_source),
            },
            "/postback/{source}": {
                "get": _postback_operation("GET", True, default_source),
                "post": _postback_operation("POST", True, default_source),
            },
            "/click": {"get": _click_operation()},
            "/impression": {"get": _impression_operation()},
            "/conversions/{conversion_id}/status": {"post": _admin_operation()},
            "/healthz": _get_only(
                "Ready when the Kafka producer is connected",
                "healthz",
                {
                    "200": {
                        "description": "ready",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}},
                    },
                    "503": {
                        "description": "starting",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}},
                    },
                },
            ),
            "/metrics": _get_only(
                "Prometheus metrics",
                "metrics",
                {"200": {"description": "Prometheus text format", "content": text_body}},
            ),
            "/openapi.json": _get_only(
                "This document",
                "openapi",
                {
                    "200": {
                        "description": "OpenAPI 3.0",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            ),
        },
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "query", "name": "token", "description": "auth = token"},
                "hmac": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Signature",
                    "description": "auth = hmac: sha256=<hex of HMAC(secret, '{ts}.' + query or body)>",
                },
                "hmac_timestamp": {"type": "apiKey", "in": "header", "name": "X-Timestamp"},
                "admin": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token of the sources file's [admin.tokens]; its name is who adjusted",
                },
            },
        },
    }


def spec_bytes(default_source: str = "default") -> bytes:
    return json.dumps(spec(default_source), separators=(",", ":")).encode()

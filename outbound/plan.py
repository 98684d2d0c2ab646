"""Which postback a conversion version gets, and its exact request. Pure.

A conversion goes to the publisher of its click, if that publisher is configured and
wants the version's status. The request is a function of the conversion and the
template alone, so a resend after a restart is the same request with the same
Idempotency-Key: derived from (conversion_id, version, destination), never random.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from outbound.config import Publisher
from outbound.templates import macro_values
from postbacks.conventions import ALWAYS_SECRET, sign

IDEMPOTENCY_HEADER = "Idempotency-Key"
# Query parameters whose values never leave the worker except in the request itself.
SECRET_PARAMS = ALWAYS_SECRET | {"key", "apikey", "access_token", "password", "auth"}


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    url: str
    body: bytes | None
    headers: tuple[tuple[str, str], ...]

    def payload(self) -> bytes:
        """What a signature covers: the raw body of a POST, the raw query string of a GET."""
        if self.method == "POST":
            return self.body or b""
        return urlsplit(self.url).query.encode()


@dataclass(frozen=True, slots=True)
class Delivery:
    key: str
    publisher: Publisher
    request: Request


def idempotency_key(conversion_id: str, version: int, destination: str) -> str:
    """128 bits of SHA-256 over the three: the same delivery always gets the same key."""
    material = f"{conversion_id}\x1f{version}\x1f{destination}".encode()
    return hashlib.sha256(material).hexdigest()[:32]


def plan(conversion: Mapping[str, Any], publishers: Mapping[str, Publisher]) -> Delivery | None:
    """The delivery this conversion version needs, or None (publisher not configured, status not wanted)."""
    publisher = publishers.get(conversion["publisher_id"])
    if publisher is None:
        return None
    postback = publisher.postback_for(conversion["offer_id"], conversion["event_name"])
    if conversion["status"] not in postback.statuses:
        return None
    key = idempotency_key(conversion["conversion_id"], conversion["version"], publisher.publisher_id)
    values = macro_values(conversion, key)
    headers: list[tuple[str, str]] = [(IDEMPOTENCY_HEADER, key)]
    body = None
    if postback.body is not None:
        body = postback.body.render(values).encode()
        headers.append(("Content-Type", postback.content_type or "application/x-www-form-urlencoded"))
    headers.extend(postback.headers)
    return Delivery(
        key, publisher, Request(postback.method, postback.url.render(values), body, tuple(headers))
    )


def signature_headers(publisher: Publisher, request: Request, now_s: float) -> tuple[tuple[str, str], ...]:
    """HMAC-SHA256 over `"{timestamp}." + payload`, the same scheme the ingest verifies (docs/sending.md)."""
    if publisher.hmac_secret is None:
        return ()
    stamp = str(int(now_s))
    signature = sign(publisher.hmac_secret, stamp.encode() + b"." + request.payload())
    return ((publisher.signature_header, f"sha256={signature}"), (publisher.timestamp_header, stamp))


def redact(url: str) -> str:
    """The URL for logs and ClickHouse: secret-looking query values and any user:password removed."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = urlencode(
        [
            (k, "***" if k.lower() in SECRET_PARAMS else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ]
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))

"""Publishers' postback templates, read from the `[publishers.<id>]` tables of the sources file.

The same TOML file as the ingest's sources (one place for every partner's settings).
Every mistake fails at start-up with the publisher and the key at fault: an unknown
macro, an unknown key (a typo like `statues` would otherwise silently fire on every
status), a macro in the URL's scheme or host (a sub id must never choose where a
request goes), a body on a GET. Example in docs/outbound.md.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from outbound.templates import MACROS, Encoding, Template, UnknownMacroError, compile_template
from postbacks.conventions import CANONICAL_STATUSES, ConfigError

FORM = "application/x-www-form-urlencoded"
_RESERVED_HEADERS = frozenset({"idempotency-key", "content-type", "content-length", "host"})

_POSTBACK_KEYS = frozenset({"url", "method", "body", "content_type", "headers", "statuses"})
_OVERRIDE_KEYS = _POSTBACK_KEYS | {"offer_id", "event_name"}
_PUBLISHER_KEYS = _POSTBACK_KEYS | {
    "hmac_secret",
    "signature_header",
    "timestamp_header",
    "concurrency",
    "timeout_s",
    "max_attempts",
    "max_age_s",
    "resend_uncertain",
    "overrides",
}


@dataclass(frozen=True, slots=True)
class Postback:
    """The request for a matching conversion, and which of its statuses are passed on."""

    url: Template
    method: str
    body: Template | None
    content_type: str | None
    headers: tuple[tuple[str, str], ...]
    statuses: frozenset[str]


@dataclass(frozen=True, slots=True)
class Override:
    """A postback for one offer and/or one event of a publisher (unset keys: the publisher's)."""

    offer_id: str | None
    event_name: str | None
    postback: Postback

    def specificity(self, offer_id: str, event_name: str) -> int:
        """0: does not apply; otherwise higher is more specific (offer+event > offer > event)."""
        if self.offer_id is not None and self.offer_id != offer_id:
            return 0
        if self.event_name is not None and self.event_name != event_name:
            return 0
        return (2 if self.offer_id is not None else 0) + (1 if self.event_name is not None else 0)


@dataclass(frozen=True, slots=True)
class Publisher:
    """One destination: its templates and its transport and retry settings (None: the global setting)."""

    publisher_id: str
    default: Postback
    overrides: tuple[Override, ...] = ()
    hmac_secret: str | None = None
    signature_header: str = "x-signature"
    timestamp_header: str = "x-timestamp"
    concurrency: int | None = None
    timeout_s: float | None = None
    max_attempts: int | None = None
    max_age_s: float | None = None
    # After a crash between sending and recording the answer: send again with the same
    # Idempotency-Key (the receiver deduplicates), or dead-letter it (never twice, maybe never).
    resend_uncertain: bool = True

    def postback_for(self, offer_id: str, event_name: str) -> Postback:
        best, score = self.default, 0
        for override in self.overrides:
            s = override.specificity(offer_id, event_name)
            if s > score:
                best, score = override.postback, s
        return best


def load_publishers(path: Path) -> dict[str, Publisher]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return parse_publishers(data, str(path))


def parse_publishers(data: Mapping[str, Any], where: str = "sources") -> dict[str, Publisher]:
    """Publishers by id; an absent `[publishers]` table means none (nothing is sent)."""
    raw = data.get("publishers", {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: publishers must be a table of [publishers.<id>] tables")
    return {str(pid): _publisher(str(pid), spec, f"{where}: publishers.{pid}") for pid, spec in raw.items()}


def _publisher(publisher_id: str, spec: Any, at: str) -> Publisher:
    if not isinstance(spec, dict):
        raise ConfigError(f"{at}: must be a table")
    _known_keys(spec, _PUBLISHER_KEYS, at)
    if "url" not in spec:
        raise ConfigError(f"{at}: url is required")
    default = _postback(spec, None, at)
    overrides = []
    seen: set[tuple[str | None, str | None]] = set()
    raw_overrides = spec.get("overrides", [])
    if not isinstance(raw_overrides, list):
        raise ConfigError(f"{at}.overrides: must be an array of tables ([[publishers.<id>.overrides]])")
    for i, raw in enumerate(raw_overrides):
        where = f"{at}.overrides[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: must be a table")
        _known_keys(raw, _OVERRIDE_KEYS, where)
        offer_id, event_name = _opt_str(raw, "offer_id", where), _opt_str(raw, "event_name", where)
        if offer_id is None and event_name is None:
            raise ConfigError(
                f"{where}: needs offer_id and/or event_name (the publisher's own keys are the default)"
            )
        if (offer_id, event_name) in seen:
            raise ConfigError(f"{where}: a second override for offer {offer_id!r}, event {event_name!r}")
        seen.add((offer_id, event_name))
        overrides.append(Override(offer_id, event_name, _postback(raw, default, where)))
    secret = _opt_str(spec, "hmac_secret", at)
    if secret is not None and len(secret) < 16:
        raise ConfigError(f"{at}: hmac_secret must be at least 16 characters")
    resend = spec.get("resend_uncertain", True)
    if not isinstance(resend, bool):
        raise ConfigError(f"{at}: resend_uncertain must be true or false")
    return Publisher(
        publisher_id=publisher_id,
        default=default,
        overrides=tuple(overrides),
        hmac_secret=secret,
        signature_header=(_opt_str(spec, "signature_header", at) or "x-signature").lower(),
        timestamp_header=(_opt_str(spec, "timestamp_header", at) or "x-timestamp").lower(),
        concurrency=_opt_int(spec, "concurrency", at),
        timeout_s=_opt_float(spec, "timeout_s", at),
        max_attempts=_opt_int(spec, "max_attempts", at),
        max_age_s=_opt_float(spec, "max_age_s", at),
        resend_uncertain=resend,
    )


def _postback(spec: Mapping[str, Any], inherited: Postback | None, at: str) -> Postback:
    method = str(spec.get("method", inherited.method if inherited else "GET")).upper()
    if method not in {"GET", "POST"}:
        raise ConfigError(f"{at}: method must be GET or POST (got {method!r})")
    url = _url(spec["url"], at) if "url" in spec else inherited.url if inherited else None
    assert url is not None  # the publisher's own table requires url
    content_type = _opt_str(spec, "content_type", at) or (inherited.content_type if inherited else None)
    body: Template | None = None
    if "body" in spec:
        encoding: Encoding = "json" if content_type and "json" in content_type.lower() else "url"
        body = _compile(_str(spec, "body", at), encoding, f"{at}.body")
    elif inherited is not None and "method" not in spec:
        body = inherited.body
    if body is not None and method != "POST":
        raise ConfigError(f'{at}: a body needs method = "POST"')
    if body is not None and content_type is None:
        content_type = FORM
    return Postback(
        url=url,
        method=method,
        body=body,
        content_type=content_type if body is not None else None,
        headers=_headers(spec, at) if "headers" in spec else inherited.headers if inherited else (),
        statuses=_statuses(spec, at)
        if "statuses" in spec
        else inherited.statuses
        if inherited
        else frozenset({"approved"}),
    )


def _url(raw: Any, at: str) -> Template:
    if not isinstance(raw, str):
        raise ConfigError(f"{at}.url: must be a string")
    template = _compile(raw, "url", f"{at}.url")
    sample = urlsplit(template.render(dict.fromkeys(MACROS, "x")))
    if sample.scheme not in {"http", "https"} or not sample.hostname:
        raise ConfigError(f"{at}.url: must be an http(s) URL with a host (got {raw!r})")
    blank = urlsplit(compile_template(raw).render({}))
    if (blank.scheme, blank.netloc) != (sample.scheme, sample.netloc):
        raise ConfigError(
            f"{at}.url: macros are not allowed in the scheme or host (a value must not pick the host)"
        )
    return template


def _compile(text: str, encoding: Encoding, at: str) -> Template:
    try:
        return compile_template(text, encoding)
    except UnknownMacroError as exc:
        raise ConfigError(f"{at}: {exc}") from exc


def _statuses(spec: Mapping[str, Any], at: str) -> frozenset[str]:
    raw = spec["statuses"]
    if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
        raise ConfigError(f"{at}.statuses: must be a list of statuses")
    unknown = sorted(set(raw) - CANONICAL_STATUSES)
    if unknown:
        raise ConfigError(f"{at}.statuses: unknown {unknown} (known: {sorted(CANONICAL_STATUSES)})")
    return frozenset(raw)


def _headers(spec: Mapping[str, Any], at: str) -> tuple[tuple[str, str], ...]:
    raw = spec["headers"]
    if not isinstance(raw, dict):
        raise ConfigError(f"{at}.headers: must be a table of name = value")
    headers = []
    for name, value in raw.items():
        if not isinstance(value, str) or any(c in f"{name}{value}" for c in "\r\n\0"):
            raise ConfigError(f"{at}.headers.{name}: must be a one-line string")
        if name.lower() in _RESERVED_HEADERS:
            raise ConfigError(f"{at}.headers.{name}: set by the sender itself")
        headers.append((str(name), value))
    return tuple(headers)


def _known_keys(spec: Mapping[str, Any], known: frozenset[str], at: str) -> None:
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ConfigError(f"{at}: unknown key(s) {unknown} (known: {sorted(known)})")


def _str(spec: Mapping[str, Any], key: str, at: str) -> str:
    value = spec[key]
    if not isinstance(value, str):
        raise ConfigError(f"{at}.{key}: must be a string")
    return value


def _opt_str(spec: Mapping[str, Any], key: str, at: str) -> str | None:
    return _str(spec, key, at) if key in spec else None


def _opt_float(spec: Mapping[str, Any], key: str, at: str) -> float | None:
    if key not in spec:
        return None
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{at}.{key}: must be a positive number")
    return float(value)


def _opt_int(spec: Mapping[str, Any], key: str, at: str) -> int | None:
    if key not in spec:
        return None
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{at}.{key}: must be a positive whole number")
    return value

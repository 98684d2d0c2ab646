"""The few pieces of HTTP the ingest service needs, on bare ASGI.

No framework: four routes do not need a router, and each layer between the socket
and Kafka costs throughput (see docs/benchmarks.md). This module reads a request
(with a hard body limit) and writes JSON/redirect responses; it knows nothing of
postbacks.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = (b"content-type", b"application/json")
# One encoder: json.dumps with any non-default argument builds a new JSONEncoder per call, which
# was most of the cost of answering a request.
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: bytes
    headers: dict[str, str]
    peer: str
    body: bytes = b""
    body_too_large: bool = False
    body_timed_out: bool = False

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_request(scope: Scope, receive: Receive, max_body: int, timeout_s: float = 10.0) -> Request:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    client = scope.get("client")
    request = Request(
        method=scope["method"],
        path=scope["path"],
        query=scope.get("query_string", b""),
        headers=headers,
        peer=client[0] if client else "",
    )
    if request.method != "POST":
        return request
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_body:
        request.body_too_large = True
        return request
    chunks: list[bytes] = []
    size = 0
    more = True
    try:
        async with asyncio.timeout(timeout_s):
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    break
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > max_body:
                    request.body_too_large = True
                    return request
                chunks.append(chunk)
                more = message.get("more_body", False)
    except TimeoutError:
        request.body_timed_out = True
    request.body = b"".join(chunks)
    return request


async def send_json(
    send: Send, status: int, payload: Mapping[str, Any], headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    body = _ENCODE(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_JSON, (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_bytes(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_redirect(send: Send, location: str, payload: Mapping[str, Any]) -> None:
    await send_json(send, 302, payload, [(b"location", location.encode())])


class Redactor:
    """Replaces secrets in text that is stored: a refused request's query, body and path.

    A parameter is matched by its name as the parser reads it (percent- and plus-decoded,
    JSON escapes resolved, any case), so every spelling of `token` that could authenticate
    is also one that is redacted: a pattern over the raw text let `tok%65n=<token>` through.
    The configured tokens and HMAC keys themselves are replaced wherever they appear, for a
    sender that put one in the wrong parameter or in the path.
    """

    _PAIR = re.compile(r"[^&;]+")
    _JSON_MEMBER = re.compile(r'"((?:[^"\\]|\\.)*)"(\s*:\s*)("(?:[^"\\]|\\.)*"|[^,}\]\s]+)')

    def __init__(self, secret_names: Iterable[str], secret_values: Iterable[str] = ()) -> None:
        self._names = frozenset(n.lower() for n in secret_names)
        self._values = sorted({v for v in secret_values if v}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        text = self._JSON_MEMBER.sub(self._json_member, text)
        text = self._PAIR.sub(self._query_pair, text)
        for value in self._values:
            text = text.replace(value, "REDACTED")
        return text

    def _secret(self, name: str) -> bool:
        return name.strip().lstrip("?").lower() in self._names

    def _query_pair(self, match: re.Match[str]) -> str:
        name, equals, _ = match[0].partition("=")
        if equals and self._secret(unquote_plus(name, errors="replace")):
            return f"{name}=REDACTED"
        return match[0]

    def _json_member(self, match: re.Match[str]) -> str:
        try:
            name = json.loads(f'"{match[1]}"')
        except ValueError:
            name = match[1]
        if isinstance(name, str) and self._secret(name):
            return f'"{match[1]}"{match[2]}"REDACTED"'
        return match[0]

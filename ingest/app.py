"""The ingest service: postbacks and clicks in over HTTP, Avro records out to Kafka.

Routes:
  GET|POST /postback[/<source>]  validate, authenticate, publish to postbacks.raw; 200 after the ack
  GET      /click                record a click in clicks.raw; 302 to the offer (or JSON)
  GET      /impression           record an impression in impressions.raw, keyed by its device (JSON)
  GET      /healthz              200 when the Kafka producer is connected, else 503
  GET      /metrics              Prometheus text
  GET      /openapi.json         this service described (ingest/openapi.py)

Every refusal is a 4xx with a JSON reason and is published to postbacks.rejected
(awaiting that ack too, so nothing vanishes); when Kafka cannot take it, 503. A source
over its rate limit gets 429 + Retry-After and is not recorded: it is told to come back,
and recording a flood would defeat the limit.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ingest import admin, metrics, openapi
from ingest.auth import HmacAuth, NoAuth, TokenAuth, check_ip_allowed, client_ip
from ingest.clicks import new_click_id, parse_click
from ingest.http import (
    Receive,
    Redactor,
    Request,
    Scope,
    Send,
    read_request,
    send_bytes,
    send_json,
    send_redirect,
)
from ingest.impressions import parse_impression
from ingest.parsing import Params, Refusal, normalise_postback, parse_json_body, parse_query
from ingest.publisher import KafkaPublisher, Unavailable
from ingest.ratelimit import TokenBucket
from ingest.request_ids import request_id
from ingest.sources import Source, SourceRegistry, load_sources
from postbacks.catalog import Catalog, load_catalog
from postbacks.settings import Settings
from postbacks.topics import Topics
from schemas import CLICK, IMPRESSION, POSTBACK_RAW, POSTBACK_REJECTED, Codec

log = logging.getLogger(__name__)

MAX_STORED_CHARS = 4096


class Publisher(Protocol):
    """What the app needs from Kafka; `KafkaPublisher` in production, a fake in unit tests."""

    @property
    def ready(self) -> bool: ...
    @property
    def in_flight(self) -> int: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def publish(
        self, topic: str, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> float: ...


@dataclass(slots=True)
class _Context:
    """What is known about a postback request so far; enough to write its rejection."""

    request: Request
    request_id: str
    received_ms: int
    sender_ip: str
    source: Source | None = None
    click_id: str | None = None


class IngestApp:
    def __init__(
        self,
        settings: Settings,
        sources: SourceRegistry,
        catalog: Catalog,
        publisher: Publisher,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.sources = sources
        self.catalog = catalog
        self.publisher = publisher
        self.topics = Topics(settings.topic_prefix)
        self.clock = clock
        self._raw = Codec(POSTBACK_RAW)
        self._clicks = Codec(CLICK)
        self._impressions = Codec(IMPRESSION)
        self._rejected = Codec(POSTBACK_REJECTED)
        self._redact = Redactor(sources.secret_params, sources.secret_values)
        self._openapi_json = openapi.spec_bytes(sources.default or "default")
        self._retry_after = [(b"retry-after", str(settings.retry_after_s).encode())]
        self._buckets = {
            name: TokenBucket(*source.rate_limit)
            for name, source in sources.sources.items()
            if source.rate_limit is not None
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path == "/postback" or path.startswith("/postback/"):
            route, handler = "postback", self._postback
        elif path == "/click":
            route, handler = "click", self._click
        elif path == "/impression":
            route, handler = "impression", self._impression
        elif path.startswith(admin.PREFIX):
            route, handler = "adjust", self._adjust
        elif path == "/healthz":
            route, handler = "healthz", self._healthz
        elif path == "/metrics":
            route, handler = "metrics", self._metrics
        elif path == "/openapi.json":
            route, handler = "openapi", self._openapi
        else:
            await send_json(send, 404, {"status": "error", "reason": "not_found"})
            return
        allowed = {"postback": ("GET", "POST"), "adjust": ("POST",)}.get(route, ("GET",))
        if scope["method"] not in allowed:
            await send_json(
                send,
                405,
                {"status": "error", "reason": "method_not_allowed"},
                [(b"allow", ", ".join(allowed).encode())],
            )
            metrics.requests(route, 405).inc()
            return
        request = await read_request(
            scope, receive, self.settings.max_body_bytes, self.settings.body_timeout_s
        )
        try:
            status = await handler(request, send)
        except Exception:  # a bug of ours, never the sender's input: say so, and let them retry
            log.exception("unhandled error", extra={"route": route})
            await send_json(send, 500, {"status": "error", "reason": "internal_error"})
            status = 500
        metrics.requests(route, status).inc()

    # -- postbacks ---------------------------------------------------------------------------

    def _context(self, request: Request, now: float) -> _Context:
        """A request's id, arrival time and sender address (proxies believed per the sources file)."""
        return _Context(
            request=request,
            request_id=request_id(),
            received_ms=int(now * 1000),
            sender_ip=client_ip(
                request.peer, request.headers.get("x-forwarded-for"), self.sources.trusted_proxies
            ),
        )

    async def _postback(self, request: Request, send: Send) -> int:
        now = self.clock()
        ctx = self._context(request, now)
        try:
            record = self._accept(ctx, now)
        except Refusal as refusal:
            return await self._refuse(ctx, refusal, send)
        bucket = self._buckets.get(record["source"])
        if bucket is not None and (retry_in := bucket.take(now)) > 0:
            return await self._rate_limited(send, record["source"], retry_in)
        try:
            wait = await self.publisher.publish(
                self.topics.postbacks_raw,
                record["click_id"].encode(),
                self._raw.encode(record),
                self._raw.headers,
            )
        except Unavailable as exc:
            return await self._unavailable(send, exc)
        metrics.publish_seconds("postbacks.raw").observe(wait)
        await send_json(send, 200, {"status": "accepted", "request_id": ctx.request_id})
        return 200

    async def _adjust(self, request: Request, send: Send) -> int:
        """An advertiser adjustment (ingest/admin.py): authenticated, checked, on postbacks.raw."""
        now = self.clock()
        ctx = self._context(request, now)
        try:
            if request.body_too_large:
                limit = self.settings.max_body_bytes
                raise Refusal("body_too_large", f"body exceeds {limit} bytes", None, 413)
            conversion_id = admin.conversion_id_of(request.path)
            who = admin.admin_name(self.sources.admin_tokens, request.headers.get("authorization"))
            fields = admin.parse_adjustment(request.body, request.content_type)
            ctx.click_id = fields["click_id"]
        except Refusal as refusal:
            return await self._refuse(ctx, refusal, send)
        record = admin.adjustment_record(
            fields,
            conversion_id,
            who,
            request_id=ctx.request_id,
            received_at=ctx.received_ms,
            method=request.method,
            sender_ip=ctx.sender_ip,
        )
        try:
            await self.publisher.publish(
                self.topics.postbacks_raw,
                record["click_id"].encode(),
                self._raw.encode(record),
                self._raw.headers,
            )
        except Unavailable as exc:
            return await self._unavailable(send, exc)
        log.info(
            "adjustment accepted",
            extra={"conversion_id": conversion_id, "by": who, "request_id": ctx.request_id},
        )
        await send_json(send, 202, {"status": "accepted", "request_id": ctx.request_id})
        return 202

    def _accept(self, ctx: _Context, now: float) -> dict[str, Any]:
        """Everything between the bytes and the record: size, parameters, source, auth, validation."""
        request = ctx.request
        if request.body_too_large:
            raise Refusal("body_too_large", f"body exceeds {self.settings.max_body_bytes} bytes", None, 413)
        if request.body_timed_out:
            timeout = self.settings.body_timeout_s
            raise Refusal("request_timeout", f"body not received within {timeout:g} s", None, 408)
        name = request.path[len("/postback/") :] if request.path.startswith("/postback/") else None
        ctx.source = self.sources.get(name)
        if ctx.source is None:
            raise Refusal("unknown_source", f"no source named {name or self.sources.default!r}", None, 404)
        params = self._params(request)
        source = ctx.source
        check_ip_allowed(ctx.sender_ip, source.allow_ips)
        self._authenticate(source, request, params, now)
        record = normalise_postback(params, source.rules, int(now * 1000))
        ctx.click_id = record["click_id"]
        record.update(
            request_id=ctx.request_id,
            received_at=ctx.received_ms,
            source=source.name,
            method=request.method,
            sender_ip=ctx.sender_ip,
        )
        return record

    def _params(self, request: Request) -> Params:
        max_params = self.settings.max_params
        params = parse_query(request.query, max_params)
        if request.method == "POST" and request.body:
            kind = request.content_type
            if kind == "application/json":
                params += parse_json_body(request.body, max_params)
            elif kind in ("application/x-www-form-urlencoded", ""):
                params += parse_query(request.body, max_params)
            else:
                raise Refusal("unsupported_media_type", f"content type {kind!r} is not accepted", None, 415)
            if len(params) > max_params:
                raise Refusal("too_many_parameters", f"more than {max_params} parameters")
        return params

    @staticmethod
    def _authenticate(source: Source, request: Request, params: Params, now: float) -> None:
        auth = source.auth
        if isinstance(auth, TokenAuth):
            auth.check(dict(params))
        elif isinstance(auth, HmacAuth):
            payload = request.body if request.method == "POST" else request.query
            auth.check(request.headers, payload, now)
        else:
            assert isinstance(auth, NoAuth)

    async def _refuse(self, ctx: _Context, refusal: Refusal, send: Send) -> int:
        request = ctx.request
        rejected = {
            "request_id": ctx.request_id,
            "received_at": ctx.received_ms,
            "stage": "ingest",
            "reason": refusal.reason,
            "detail": self._redact(refusal.detail),
            "field": refusal.field,
            "http_status": refusal.status,
            "source": ctx.source.name if ctx.source else None,
            "click_id": ctx.click_id,
            "method": request.method,
            "path": self._redact(request.path[:256]),
            "query": self._stored(request.query),
            "body": self._stored(request.body) if request.body else None,
            "content_type": request.headers.get("content-type"),
            "sender_ip": ctx.sender_ip,
        }
        key = (ctx.click_id or ctx.request_id).encode()
        try:
            await self.publisher.publish(
                self.topics.postbacks_rejected, key, self._rejected.encode(rejected), self._rejected.headers
            )
        except Unavailable as exc:
            return await self._unavailable(send, exc)
        metrics.REJECTED.labels(refusal.reason).inc()
        body = {
            "status": "rejected",
            "reason": refusal.reason,
            "detail": refusal.detail,
            "request_id": ctx.request_id,
        }
        if refusal.field:
            body["field"] = refusal.field
        await send_json(send, refusal.status, body)
        return refusal.status

    def _stored(self, raw: bytes) -> str:
        return self._redact(raw[: MAX_STORED_CHARS * 2].decode("utf-8", errors="replace"))[:MAX_STORED_CHARS]

    async def _rate_limited(self, send: Send, source: str, retry_in: float) -> int:
        metrics.RATE_LIMITED.labels(source).inc()
        await send_json(
            send,
            429,
            {
                "status": "rate_limited",
                "reason": "rate_limited",
                "detail": f"source {source!r} is over its limit",
            },
            [(b"retry-after", str(max(1, math.ceil(retry_in))).encode())],
        )
        return 429

    async def _unavailable(self, send: Send, exc: Exception) -> int:
        metrics.UNAVAILABLE.inc()
        log.warning("answering 503", extra={"error": str(exc)})
        await send_json(
            send,
            503,
            {"status": "unavailable", "reason": "kafka_unavailable", "detail": str(exc)},
            self._retry_after,
        )
        return 503

    # -- clicks ---------------------------------------------------------------------------------

    async def _click(self, request: Request, send: Send) -> int:
        now = self.clock()
        try:
            params = parse_query(request.query, self.settings.max_params)
            click = parse_click(params)
            offer = self.catalog.offers.get(click["offer_id"])
            if offer is None and self.catalog.restricts_offers:
                raise Refusal("unknown_offer", f"no offer {click['offer_id']!r}", "offer_id", 404)
        except Refusal as refusal:
            metrics.REJECTED.labels(refusal.reason).inc()
            await send_json(
                send,
                refusal.status,
                {
                    "status": "rejected",
                    "reason": refusal.reason,
                    "detail": refusal.detail,
                    "field": refusal.field,
                },
            )
            return refusal.status
        click_id = new_click_id()
        click.update(
            click_id=click_id,
            clicked_at=int(now * 1000),
            ip=client_ip(request.peer, request.headers.get("x-forwarded-for"), self.sources.trusted_proxies),
            user_agent=request.headers.get("user-agent", "")[:1024] or None,
            referrer=request.headers.get("referer", "")[:1024] or None,
        )
        try:
            wait = await self.publisher.publish(
                self.topics.clicks_raw, click_id.encode(), self._clicks.encode(click), self._clicks.headers
            )
        except Unavailable as exc:
            return await self._unavailable(send, exc)
        metrics.publish_seconds("clicks.raw").observe(wait)
        answer = {"status": "recorded", "click_id": click_id}
        wants_json = dict(params).get("format") == "json" or "application/json" in request.headers.get(
            "accept", ""
        )
        location = (
            None if (offer is None or wants_json) else offer.landing_url({**click, "clickid": click_id})
        )
        if location:
            await send_redirect(send, location, answer)
            return 302
        await send_json(send, 200, answer)
        return 200

    # -- impressions ----------------------------------------------------------------------------

    async def _impression(self, request: Request, send: Send) -> int:
        """An ad impression, for view-through attribution (ingest/impressions.py).

        Public like a click (a pixel fired from the user's browser or an ad server's tracker
        holds no secret); the catalog's offer list is the check, as for clicks. Unlike a
        click's, a refusal is kept on postbacks.rejected: a lost impression is a lost
        conversion later, and no redirect is waiting for the answer. Its limits are a GET's:
        INGEST_MAX_PARAMS parameters of 1024 characters at most (a GET's body is never read).
        """
        now = self.clock()
        ctx = self._context(request, now)
        try:
            impression = parse_impression(parse_query(request.query, self.settings.max_params))
            if self.catalog.restricts_offers and impression["offer_id"] not in self.catalog.offers:
                raise Refusal("unknown_offer", f"no offer {impression['offer_id']!r}", "offer_id", 404)
        except Refusal as refusal:
            return await self._refuse(ctx, refusal, send)
        impression.update(
            viewed_at=ctx.received_ms,
            ip=ctx.sender_ip,
            user_agent=request.headers.get("user-agent", "")[:1024] or None,
        )
        try:
            wait = await self.publisher.publish(
                self.topics.impressions_raw,
                impression["device_key"].encode(),
                self._impressions.encode(impression),
                self._impressions.headers,
            )
        except Unavailable as exc:
            return await self._unavailable(send, exc)
        metrics.publish_seconds("impressions.raw").observe(wait)
        await send_json(send, 200, {"status": "recorded", "impression_id": impression["impression_id"]})
        return 200

    # -- operations ------------------------------------------------------------------------------

    async def _healthz(self, request: Request, send: Send) -> int:
        ready = self.publisher.ready
        status = 200 if ready else 503
        await send_json(send, status, {"status": "ok" if ready else "starting", "kafka": ready})
        return status

    async def _metrics(self, request: Request, send: Send) -> int:
        metrics.IN_FLIGHT.set(self.publisher.in_flight)
        await send_bytes(send, 200, metrics.exposition(), b"text/plain; version=0.0.4; charset=utf-8")
        return 200

    async def _openapi(self, request: Request, send: Send) -> int:
        await send_bytes(send, 200, self._openapi_json, b"application/json")
        return 200

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.publisher.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                with contextlib.suppress(Exception):
                    await self.publisher.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app() -> IngestApp:
    """ASGI factory used by the server: everything comes from the environment (Settings)."""
    from postbacks.lifecycle import die_with_parent
    from postbacks.logs import configure

    die_with_parent()  # this runs in a granian worker: it must not serve on if the server dies

    settings = Settings.from_env()
    configure(settings.log_level, settings.log_format)
    if not settings.kafka_bootstrap_servers:
        raise SystemExit("KAFKA_BOOTSTRAP_SERVERS is required for the ingest service")
    sources = load_sources(settings.effective_sources_file)
    catalog = load_catalog(settings.catalog_file)
    return IngestApp(settings, sources, catalog, KafkaPublisher(settings))

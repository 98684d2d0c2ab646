"""Baseline for the stream: a Quix Streams app doing the stream worker's job, the library next door.

`python -m bench.quix_peer {equivalent|decider} GROUP` (settings from the environment, as
the worker takes them) reads the clicks and postbacks topics of its settings' prefix and
writes one Avro output per postback to the worker's output topics, until SIGTERM.

Why it is an honest equivalent of `postbacks stream` (issue #15):
- same topics and records: the bench preloads the same clicks, then the same postbacks,
  into a copy of the worker's topics (same partitions, keyed by click id);
- the two topics are concatenated into one dataframe (`StreamingDataFrame.concat`, so one
  state store serves both, as the worker's click table does), read by a consumer group
  of its own from the earliest offset;
- state in RocksDB with its changelog topic (Quix's default, `use_changelog_topics`),
  processing guarantee at-least-once, offsets and changelog committed every
  STREAM_COMMIT_INTERVAL_S, as the worker commits;
- the conversion enriched as the worker's is, device fields included (ua-parser, as a Quix
  user would call it, with its own cache);
- each record Avro-decoded with the project's `schemas.Codec`, and one Avro-encoded
  output per postback (a conversion, a duplicate or an unknown-click refusal) with the
  schema headers the worker sets, to the worker's output topics.

Two jobs: `equivalent` is what a Quix user would write for this (the click's fields and
each dedup key as JSON values in the state, a conversion built in place); `decider` runs
this project's own `stream.decide.Decider` and state codec per event, the worker's
decisions and state bytes inside Quix (so the bench shows whether our decisions or our
driving of Faust cost more). Neither is part of the pipeline: no test relies on them.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import ua_parser
from quixstreams import Application, State, message_context
from quixstreams.models.serializers import SerializationContext, Serializer
from quixstreams.state.rocksdb import RocksDBOptions

from postbacks.catalog import load_catalog
from postbacks.settings import Settings
from postbacks.topics import Topics
from schemas import CLICK, CONVERSION, POSTBACK_DUPLICATE, POSTBACK_RAW, POSTBACK_REJECTED, Codec, schema_name
from stream.decide import CONVERSION_KIND, DUPLICATE_KIND, REJECTED_KIND, Decider
from stream.registry import load_plugins
from stream.rules.dedup import event_name, is_install
from stream.rules.fx import QUANTUM, load_rates, to_usd
from stream.state import STATE_CLICK_FIELDS, StateCodec
from stream.worker import source_policies

Headers = list[tuple[str, bytes]]
MODES = ("equivalent", "decider")


class Output(NamedTuple):
    kind: str  # CONVERSION_KIND, REJECTED_KIND or DUPLICATE_KIND: which output topic
    value: bytes  # the Avro record
    headers: Headers  # its schema headers


class OutputValue(Serializer):
    """The bytes of an `Output`: its topic was chosen from its kind, its headers set from it."""

    def __call__(self, value: Output, ctx: SerializationContext) -> bytes:
        return value.value


class EquivalentJob:
    """The job as a Quix user would write it: click fields and dedup keys as JSON state values.

    Dedup by the postback's event and transaction id; a postback whose click is not in
    the state is refused at once (the bench's clicks are all read before their postbacks).
    """

    def __init__(self, settings: Settings) -> None:
        self.clicks = Codec(CLICK, millis=True)
        self.postbacks = Codec(POSTBACK_RAW, millis=True)
        self.out = {
            CONVERSION_KIND: Codec(CONVERSION, millis=True),
            REJECTED_KIND: Codec(POSTBACK_REJECTED, millis=True),
            DUPLICATE_KIND: Codec(POSTBACK_DUPLICATE, millis=True),
        }
        self.rates = load_rates(settings.fx_rates_file)
        self.window_ms = int(settings.window_event_days * 86_400_000)

    def __call__(
        self, value: bytes, key: bytes, timestamp: int, headers: Any, state: State[str, Any]
    ) -> list[Output]:
        if schema_name(headers) == CLICK:
            if not state.exists("click"):
                fields = self.clicks.decode(value, headers)
                state.set("click", {name: fields.get(name) for name in STATE_CLICK_FIELDS})
            return []
        postback = self.postbacks.decode(value, headers)
        click: dict[str, Any] | None = state.get("click")
        if click is None:
            return [self._rejected(postback, None, "unknown_click", "no click within the grace period")]
        dedup_key = f"{event_name(postback)}|{postback.get('transaction_id') or postback['request_id']}"
        conversion_id = state.get(dedup_key)
        if conversion_id is not None:
            return [self._duplicate(postback, click, conversion_id, dedup_key)]
        conversion_id = f"{click['click_id']}|{dedup_key}"
        conversion_time = int(postback.get("event_time") or postback["received_at"])
        if conversion_time - int(click["clicked_at"]) > self.window_ms:
            return [self._rejected(postback, click, "outside_window", "after the attribution window")]
        record = self._conversion(postback, click, dedup_key, conversion_id, conversion_time)
        if record is None:
            return [self._rejected(postback, click, "unknown_currency", "no USD rate")]
        state.set(dedup_key, conversion_id)
        return [self._encode(CONVERSION_KIND, record)]

    def _encode(self, kind: str, record: Mapping[str, Any]) -> Output:
        codec = self.out[kind]
        return Output(kind, codec.encode(record), codec.headers)

    def _conversion(
        self, postback: dict[str, Any], click: dict[str, Any], dedup_key: str, cid: str, at: int
    ) -> dict[str, Any] | None:
        revenue, currency = postback.get("revenue"), postback.get("currency") or "USD"
        revenue_usd, fx_rate = Decimal(0).quantize(QUANTUM), None
        if revenue is not None:
            converted = to_usd(revenue, currency, self.rates)
            if converted is None:
                return None
            revenue_usd, fx_rate = converted
        payout = postback.get("payout")
        payout_usd = Decimal(0).quantize(QUANTUM)
        if payout is not None:
            converted = to_usd(payout, currency, self.rates)
            if converted is None:
                return None
            payout_usd = converted[0]
        elapsed_ms = at - int(click["clicked_at"])
        return {
            "conversion_id": cid,
            "version": message_context().offset,
            "status": "approved",
            "previous_status": None,
            "previous_version": None,
            "dedup_key": dedup_key,
            "request_id": postback["request_id"],
            "received_at": postback["received_at"],
            "source": postback["source"],
            "click_id": click["click_id"],
            "event_name": event_name(postback),
            "is_install": is_install(postback),
            "conversion_time": at,
            "install_time": postback.get("install_time"),
            "click_time": click["clicked_at"],
            "click_to_conversion_s": elapsed_ms // 1000,
            "ctit_long": elapsed_ms > 86_400_000,
            "offer_id": click["offer_id"],
            "publisher_id": click["publisher_id"],
            "campaign_id": click.get("campaign_id"),
            "pub_click_id": click.get("pub_click_id"),
            **{f"sub{i}": click.get(f"sub{i}") for i in range(1, 6)},
            "transaction_id": postback.get("transaction_id"),
            "action_id": postback.get("action_id"),
            "goal": postback.get("goal"),
            "revenue": revenue,
            "revenue_currency": currency if revenue is not None else None,
            "revenue_usd": revenue_usd,
            "payout": payout,
            "payout_currency": currency if payout is not None else None,
            "payout_usd": payout_usd,
            "previous_revenue_usd": None,
            "previous_payout_usd": None,
            "fx_rate": fx_rate,
            "country_code": postback.get("country_code") or click.get("country_code"),
            "device_ip": postback.get("device_ip"),
            "click_ip": click.get("ip"),
            **_device(postback.get("user_agent") or click.get("user_agent")),
            "platform": postback.get("platform"),
            "app_id": postback.get("app_id"),
            "site_id": postback.get("site_id"),
            "idfa": postback.get("idfa"),
            "gaid": postback.get("gaid"),
            "android_id": postback.get("android_id"),
            "is_retargeting": postback.get("is_retargeting"),
            "event_value": postback.get("event_value"),
            "extra": dict(postback.get("extra") or {}),
            "enrichment": {},
        }

    def _rejected(
        self, postback: dict[str, Any], click: dict[str, Any] | None, reason: str, detail: str
    ) -> Output:
        return self._encode(
            REJECTED_KIND,
            {
                "request_id": postback["request_id"],
                "received_at": postback["received_at"],
                "stage": "stream",
                "reason": reason,
                "detail": detail,
                "source": postback["source"],
                "click_id": postback["click_id"],
                "method": postback.get("method"),
                "sender_ip": postback.get("sender_ip"),
                "offer_id": click["offer_id"] if click else None,
                "publisher_id": click["publisher_id"] if click else None,
                "campaign_id": click.get("campaign_id") if click else None,
                "event_name": event_name(postback),
                "payout": postback.get("payout"),
                "revenue": postback.get("revenue"),
                "currency": postback.get("currency"),
                **dict.fromkeys(("field", "http_status", "path", "query", "body", "content_type")),
                "conversion_id": None,
            },
        )

    def _duplicate(self, postback: dict[str, Any], click: dict[str, Any], cid: str, dedup_key: str) -> Output:
        return self._encode(
            DUPLICATE_KIND,
            {
                "request_id": postback["request_id"],
                "received_at": postback["received_at"],
                "source": postback["source"],
                "click_id": click["click_id"],
                "conversion_id": cid,
                "dedup_key": dedup_key,
                "reason": "same_key",
                "status": "approved",
                "current_status": "approved",
                "event_name": event_name(postback),
                "offer_id": click["offer_id"],
                "publisher_id": click["publisher_id"],
                "payout": postback.get("payout"),
                "revenue": postback.get("revenue"),
                "currency": postback.get("currency"),
            },
        )


class DeciderJob:
    """The worker's own decisions per event: `Decider` on the click's state, stored as `StateCodec` bytes.

    Configured as the worker configures it (plugins, catalog, sources' dedup policies,
    rates). The state value is the worker's Avro state record, so the store passes bytes
    through (`RocksDBOptions` dumps/loads) instead of JSON.
    """

    STATE = b"state"

    def __init__(self, settings: Settings) -> None:
        load_plugins(settings.stream_plugins)
        self.decider = Decider(
            settings,
            load_catalog(settings.catalog_file),
            source_policies(settings.effective_sources_file),
            load_rates(settings.fx_rates_file),
        )
        self.codec = StateCodec()
        self.clicks = Codec(CLICK, millis=True)

    def __call__(
        self, value: bytes, key: bytes, timestamp: int, headers: Any, state: State[bytes, bytes]
    ) -> list[Output]:
        raw = state.get(self.STATE)
        current = None if raw is None else self.codec.load_state(raw)
        offset = message_context().offset
        if schema_name(headers) == CLICK:
            updated, emits = self.decider.on_click(current, self.clicks.decode(value, headers))
            if updated is not None:
                state.set(self.STATE, self.codec.dump_state(updated))
        else:
            postback = self.decider.raw.decode(value, headers)
            if current is None or current["click"] is None:  # held until its click comes
                version = self.decider.raw.writer_version(headers)
                held = self.decider.hold(current, offset, int(postback["received_at"]), value, version)
                state.set(self.STATE, self.codec.dump_state(held))
                return []
            outcome = self.decider.on_postback(current, postback, offset)
            if outcome.state_changed:
                state.set(self.STATE, self.codec.dump_state(current))
            emits = outcome.emits
        codecs = self.decider.codecs
        return [Output(e.kind, e.value, codecs[e.kind].headers_for(e.schema_version)) for e in emits]


def _same(value: bytes) -> bytes:
    return value


def _device(user_agent: str | None) -> dict[str, str | None]:
    """Device, OS and browser from a user agent with ua-parser: the worker's enrichment, written anew."""
    if not user_agent:
        return {"device_family": None, "os_family": None, "os_version": None, "browser_family": None}
    parsed = ua_parser.parse(user_agent)
    os_version = None
    if parsed.os and parsed.os.major:
        os_version = ".".join(p for p in (parsed.os.major, parsed.os.minor) if p)
    return {
        "device_family": parsed.device.family if parsed.device else None,
        "os_family": parsed.os.family if parsed.os else None,
        "os_version": os_version,
        "browser_family": parsed.user_agent.family if parsed.user_agent else None,
    }


def main(mode: str, consumer_group: str) -> None:
    settings = Settings.from_env()
    topics = Topics(settings.topic_prefix)
    job = EquivalentJob(settings) if mode == "equivalent" else DeciderJob(settings)
    app = Application(
        broker_address=settings.kafka_bootstrap_servers,
        consumer_group=consumer_group,  # its own: the bench follows its committed offsets
        auto_offset_reset="earliest",
        processing_guarantee="at-least-once",
        commit_interval=settings.stream_commit_interval_s,
        producer_extra_config={"linger.ms": settings.kafka_linger_ms},  # as the worker's producer
        state_dir=Path(settings.data_dir) / f"quix-{mode}",
        # The decider's state values are already bytes (StateCodec); the equivalent job's are JSON.
        rocksdb_options=RocksDBOptions(dumps=_same, loads=_same) if mode == "decider" else None,
        loglevel="WARNING",
    )
    clicks, postbacks = (
        app.dataframe(app.topic(name, key_deserializer="bytes", value_deserializer="bytes"))
        for name in (topics.clicks_raw, topics.postbacks_raw)
    )
    outputs = {
        kind: app.topic(name, key_serializer="bytes", value_serializer=OutputValue())
        for kind, name in (
            (CONVERSION_KIND, topics.conversions_attributed),
            (REJECTED_KIND, topics.postbacks_rejected),
            (DUPLICATE_KIND, topics.postbacks_duplicates),
        )
    }
    sdf = clicks.concat(postbacks).apply(job, stateful=True, metadata=True, expand=True)
    sdf = sdf.set_headers(lambda value, key, timestamp, headers: value.headers)
    sdf.to_topic(lambda value, key, timestamp, headers: outputs[value.kind])
    app.run()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in MODES:
        raise SystemExit(f"usage: python -m bench.quix_peer {{{'|'.join(MODES)}}} GROUP")
    main(sys.argv[1], sys.argv[2])

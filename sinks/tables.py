"""Which topic goes to which table, and how a record becomes a row.

Each spec also says how to recognise a record the stream may have emitted twice (a
replay after a worker crash re-emits identical records at new offsets): conversions
by (conversion_id, version), refusals and duplicates by request_id. Clicks come only
from ingest, once each, so their Kafka offsets are identity enough.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from postbacks.topics import Topics
from schemas import CLICK, CONVERSION, OUTBOUND_ATTEMPT, POSTBACK_DUPLICATE, POSTBACK_REJECTED, STREAM_TICK

Record = Mapping[str, Any]
Identity = tuple[Any, ...]

OFFSET_COLUMNS = ("kafka_partition", "kafka_offset")
# Columns that are plain (non-Nullable) strings in ClickHouse: absent means "".
_EMPTY_STRING = frozenset({"campaign_id", "country_code", "offer_id", "publisher_id", "source"})
# Non-Nullable columns with a default other than "": an absent value is the default (records of older
# schema versions are resolved to it by the codec; unit tests build rows without it).
_DEFAULTS = {"attribution_type": "click"}


@dataclass(frozen=True, slots=True)
class TableSpec:
    name: str
    topic: Callable[[Topics], str]
    schema: str
    columns: tuple[str, ...]
    identity: Callable[[Record], Identity] | None = None
    # SELECT returning (identity..., kafka_partition, kafka_offset) of stored rows among the batch's ids.
    identity_sql: str | None = None
    # Control records that share the topic and are no rows (the stream's clock marks in clicks.raw).
    marks: frozenset[str] = frozenset()
    # The record fields `identity` and `identity_parameters` read: they lead the schema, so the writer
    # reads them off each datum's front (sinks/avro_block.py `prefix_reader`) and ClickHouse decodes
    # the rest.
    identity_fields: tuple[str, ...] = ()
    # ClickHouse may decode the records itself (`FORMAT Avro`, see sinks/avro_block.py): for tables
    # whose row is exactly the record's fields. tests/unit/sinks/test_avro_insert.py checks that
    # both ways store the same rows.
    decode_in_clickhouse: bool = True

    def column_values(self, partition: int, records: Sequence[tuple[int, Record]]) -> list[list[Any]]:
        """These (offset, record)s as insert columns: each field, then partition and offset.

        An absent value is None, or "" in the plain-string columns. Built column by column: one
        comprehension per column is cheaper than a list per row, and clickhouse-connect serialises
        columns without transposing rows first.
        """
        values = []
        for column in self.columns:
            if column in _EMPTY_STRING:
                values.append([("" if (v := r.get(column)) is None else v) for _, r in records])
            elif column in _DEFAULTS:
                default = _DEFAULTS[column]
                values.append([(default if (v := r.get(column)) is None else v) for _, r in records])
            else:
                values.append([r.get(column) for _, r in records])
        return [*values, [partition] * len(records), [offset for offset, _ in records]]

    @property
    def insert_columns(self) -> tuple[str, ...]:
        return (*self.columns, *OFFSET_COLUMNS)

    def identity_parameters(self, records: Sequence[Record]) -> dict[str, Any]:
        """Parameters for identity_sql: the batch's ids, and its time span (records repeat exactly)."""
        assert self.identity is not None
        ids = sorted({self.identity(r)[0] for r in records})
        params: dict[str, Any] = {"ids": ids}
        if records and "received_at" in records[0]:
            times = [r["received_at"] for r in records]
            params["lo"], params["hi"] = min(times) - timedelta(seconds=1), max(times) + timedelta(seconds=1)
        return params


_CLICK_COLUMNS = (
    "click_id", "clicked_at", "offer_id", "publisher_id", "campaign_id", "pub_click_id",
    "sub1", "sub2", "sub3", "sub4", "sub5", "ip", "user_agent", "referrer", "country_code",
)  # fmt: skip

_CONVERSION_COLUMNS = (
    "conversion_id", "version", "status", "previous_status", "previous_version", "dedup_key", "request_id",
    "received_at", "source", "click_id", "event_name", "is_install", "conversion_time", "install_time",
    "click_time", "click_to_conversion_s", "ctit_long", "offer_id", "publisher_id", "campaign_id",
    "pub_click_id", "sub1", "sub2", "sub3", "sub4", "sub5", "transaction_id", "action_id", "goal",
    "revenue", "revenue_currency", "revenue_usd", "payout", "payout_currency", "payout_usd",
    "previous_revenue_usd", "previous_payout_usd", "fx_rate", "country_code", "device_ip", "click_ip",
    "device_family", "os_family", "os_version", "browser_family", "platform", "app_id", "site_id", "idfa",
    "gaid", "android_id", "is_retargeting", "event_value", "extra", "enrichment", "attribution_type",
    "impression_id",
)  # fmt: skip

_REJECTED_COLUMNS = (
    "request_id", "received_at", "stage", "reason", "detail", "field", "http_status", "source", "click_id",
    "method", "path", "query", "body", "content_type", "sender_ip", "offer_id", "publisher_id", "campaign_id",
    "event_name", "payout", "revenue", "currency", "conversion_id",
)  # fmt: skip

_DUPLICATE_COLUMNS = (
    "request_id", "received_at", "source", "click_id", "conversion_id", "dedup_key", "reason", "status",
    "current_status", "event_name", "offer_id", "publisher_id", "payout", "revenue", "currency",
)  # fmt: skip


_OUTBOUND_COLUMNS = (
    "idempotency_key", "attempt", "attempted_at", "conversion_id", "version", "publisher_id", "offer_id",
    "campaign_id", "click_id", "event_name", "status", "method", "url", "http_status", "latency_ms", "error",
    "outcome", "reason",
)  # fmt: skip


def _by_request(record: Record) -> Identity:
    return (record["request_id"],)


SPECS: tuple[TableSpec, ...] = (
    TableSpec(
        "clicks",
        lambda t: t.clicks_raw,
        CLICK,
        _CLICK_COLUMNS,
        marks=frozenset({STREAM_TICK}),
    ),
    TableSpec(
        "conversion_versions",
        lambda t: t.conversions_attributed,
        CONVERSION,
        _CONVERSION_COLUMNS,
        identity=lambda r: (r["conversion_id"], r["version"]),
        identity_fields=("conversion_id", "version"),
        identity_sql=(
            "SELECT conversion_id, version, kafka_partition, kafka_offset FROM conversion_versions "
            "WHERE conversion_id IN {ids:Array(String)}"
        ),
    ),
    TableSpec(
        "rejected_postbacks",
        lambda t: t.postbacks_rejected,
        POSTBACK_REJECTED,
        _REJECTED_COLUMNS,
        identity=_by_request,
        identity_fields=("request_id", "received_at"),
        identity_sql=(
            "SELECT request_id, kafka_partition, kafka_offset FROM rejected_postbacks "
            "WHERE received_at BETWEEN {lo:DateTime64(3)} "
            "AND {hi:DateTime64(3)} AND request_id IN {ids:Array(String)}"
        ),
    ),
    TableSpec(
        "duplicate_postbacks",
        lambda t: t.postbacks_duplicates,
        POSTBACK_DUPLICATE,
        _DUPLICATE_COLUMNS,
        identity=_by_request,
        identity_fields=("request_id", "received_at"),
        identity_sql=(
            "SELECT request_id, kafka_partition, kafka_offset FROM duplicate_postbacks "
            "WHERE received_at BETWEEN {lo:DateTime64(3)} "
            "AND {hi:DateTime64(3)} AND request_id IN {ids:Array(String)}"
        ),
    ),
    # An outbound worker that restarts after a crash records an `unknown` attempt for a request whose
    # answer it never recorded; if the real record did get out, it is kept and the `unknown` one dropped.
    TableSpec(
        "outbound_postbacks",
        lambda t: t.outbound_attempts,
        OUTBOUND_ATTEMPT,
        _OUTBOUND_COLUMNS,
        identity=lambda r: (r["idempotency_key"], r["attempt"]),
        identity_fields=("idempotency_key", "attempt"),
        identity_sql=(
            "SELECT idempotency_key, attempt, kafka_partition, kafka_offset FROM outbound_postbacks "
            "WHERE idempotency_key IN {ids:Array(String)}"
        ),
    ),
)

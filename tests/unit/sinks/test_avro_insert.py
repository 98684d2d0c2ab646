"""Rows ClickHouse decodes itself (FORMAT Avro) are the rows the Python path builds, on the real engine."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from schemas import Codec, all_versions
from sinks.avro_block import container, header, prefix_reader, with_position_fields
from sinks.clickhouse import insert_avro, insert_values
from sinks.tables import SPECS

CLICKS = next(s for s in SPECS if s.name == "clicks")


def test_every_table_lets_clickhouse_decode_and_reads_only_its_identity_in_python() -> None:
    assert all(s.decode_in_clickhouse for s in SPECS)
    for spec in SPECS:
        if spec.identity is not None:
            newest = all_versions()[spec.schema][Codec(spec.schema).version].declared
            read = prefix_reader(newest, spec.identity_fields)
            assert read is not None, spec.name  # the identity fields lead the record
            record = synthetic(spec, filled=True)
            assert spec.identity(read(Codec(spec.schema).encode(record))) == spec.identity(record)


def synthetic(spec: Any, filled: bool) -> dict[str, Any]:
    """A record of the spec's newest schema: every field set, or every optional one absent."""
    declared = all_versions()[spec.schema][Codec(spec.schema).version].declared
    now = dt.datetime.now(dt.UTC).replace(microsecond=678_000)  # recent: the raw tables' TTL keeps it
    record: dict[str, Any] = {}
    for f in declared["fields"]:
        kind = f["type"]
        if isinstance(kind, list):
            if not filled:
                record[f["name"]] = None
                continue
            kind = next(k for k in kind if k != "null")
        kind = kind.get("logicalType") or kind["type"] if isinstance(kind, dict) else kind
        record[f["name"]] = {
            "timestamp-millis": now,
            "map": {"fraud_flags": "ctit_long", "k": "v ü"},
            "decimal": Decimal("12.345678"),
            "string": f"{f['name']}-ü",
            "int": 7,
            "long": 70_000,
            "boolean": True,
            "double": 1.5,
        }[kind]
    return record


def clicks() -> list[dict[str, Any]]:
    base = {"clicked_at": 1_763_700_000_123, "offer_id": "o1", "publisher_id": "p1", "ip": "192.0.2.1"}
    return [
        {**base, "click_id": "bare"},  # every optional field absent: nulls, '' where not Nullable
        {**base, "click_id": "full", "campaign_id": "cmp", "pub_click_id": "pc", "sub1": "a", "sub2": "b",
         "sub3": "c", "sub4": "d", "sub5": "e", "user_agent": "UA ü", "referrer": "https://r.example/?q=1",
         "country_code": "DE", "extra": {"k": "v"}},
        {**base, "click_id": "empty", "campaign_id": "", "sub1": "", "country_code": ""},
    ]  # fmt: skip


def head(codec: Codec) -> bytes:
    return header(with_position_fields(all_versions()[codec.schema.name][codec.version].declared))


def stored(client: Any, table: str) -> list[tuple[Any, ...]]:
    rows = client.query(f"SELECT * FROM {table} ORDER BY kafka_offset").result_rows
    return [tuple(r) for r in rows]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_clickhouse_decoding_stores_what_python_decoding_stores(clickhouse_db: Any, spec: Any) -> None:
    codec = Codec(spec.schema)
    records = [synthetic(spec, filled=True), synthetic(spec, filled=False)]
    if spec is CLICKS:
        records += clicks()
    payloads = [(10 + i, codec.encode(r)) for i, r in enumerate(records)]
    decoded = [(o, codec.decode(p, codec.headers)) for o, p in payloads]
    insert_values(clickhouse_db, spec.name, spec.column_values(3, decoded), spec.insert_columns, "t:python")
    python_rows = stored(clickhouse_db, spec.name)
    clickhouse_db.command(f"TRUNCATE TABLE {spec.name}")
    block = container(head(codec), 3, payloads)
    insert_avro(clickhouse_db, spec.name, block, spec.insert_columns, "t:avro")
    assert stored(clickhouse_db, spec.name) == python_rows
    assert len(python_rows) == len(records)
    if spec is CLICKS:
        assert python_rows[2][4] == "" and python_rows[2][6] is None


def test_a_repeated_container_with_its_token_is_stored_once(clickhouse_db: Any) -> None:
    codec = Codec(CLICKS.schema)
    block = container(head(codec), 0, [(i, codec.encode(r)) for i, r in enumerate(clicks())])
    for _ in range(2):
        insert_avro(clickhouse_db, "clicks", block, CLICKS.insert_columns, "clicks:0:0-2")
    assert clickhouse_db.query("SELECT count() FROM clicks").result_rows == [(3,)]
    assert clickhouse_db.query("SELECT sum(clicks) FROM clicks_hourly").result_rows == [(3,)]


def test_a_corrupt_record_fails_the_insert_instead_of_storing_garbage(clickhouse_db: Any) -> None:
    codec = Codec(CLICKS.schema)
    head = header(with_position_fields(all_versions()[CLICKS.schema][codec.version].declared))
    good = codec.encode(clicks()[0])
    with pytest.raises(Exception):  # noqa: B017 - the engine's error type differs by backend
        insert_avro(
            clickhouse_db,
            "clicks",
            container(head, 0, [(0, good), (1, good[:7])]),
            CLICKS.insert_columns,
            "x",
        )
    assert clickhouse_db.query("SELECT count() FROM clicks").result_rows == [(0,)]

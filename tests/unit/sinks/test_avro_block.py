"""Avro container files built from records' bytes (pure): what ClickHouse is given to decode."""

from __future__ import annotations

import datetime as dt
import io

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import CLICK, Codec, all_versions
from sinks.avro_block import (
    container,
    container_blocks,
    header,
    prefix_reader,
    with_position_fields,
)

CODEC = Codec(CLICK)
SCHEMA = with_position_fields(all_versions()[CLICK][CODEC.version].declared)


def click(n: int, **fields: object) -> dict[str, object]:
    return {"click_id": f"c{n}", "clicked_at": 1_700_000_000_000 + n, "offer_id": "o", "publisher_id": "p",
            "ip": "192.0.2.1", **fields}  # fmt: skip


def test_a_container_reads_back_as_the_records_with_their_positions() -> None:
    records = [click(1), click(2, campaign_id="cmp", sub1="s", extra={"k": "v"}), click(3, country_code="DE")]
    offsets = [5, 200, 70_000_000_000]
    block = container(
        header(SCHEMA), 7, [(o, CODEC.encode(r)) for o, r in zip(offsets, records, strict=True)]
    )
    read = list(fastavro.reader(io.BytesIO(block)))
    expected = [CODEC.decode(CODEC.encode(r), CODEC.headers) for r in records]
    assert [{k: v for k, v in r.items() if not k.startswith("kafka_")} for r in read] == expected
    assert [(r["kafka_partition"], r["kafka_offset"]) for r in read] == [(7, o) for o in offsets]


def test_the_same_batch_gives_the_same_bytes() -> None:
    items = [(1, CODEC.encode(click(1)))]
    assert container(header(SCHEMA), 0, items) == container(header(SCHEMA), 0, items)


def test_position_fields_cannot_shadow_a_records_own() -> None:
    with pytest.raises(ValueError, match="kafka_offset"):
        with_position_fields(SCHEMA)


def test_a_container_of_several_partitions_holds_a_block_each() -> None:
    head = header(SCHEMA)
    block = container_blocks(head, [(0, [(5, CODEC.encode(click(1)))]), (4, [(9, CODEC.encode(click(2)))])])
    rows = list(fastavro.reader(io.BytesIO(block)))
    assert [(r["click_id"], r["kafka_partition"], r["kafka_offset"]) for r in rows] == [
        ("c1", 0, 5),
        ("c2", 4, 9),
    ]
    assert container(head, 0, [(5, CODEC.encode(click(1)))]) == container_blocks(
        head, [(0, [(5, CODEC.encode(click(1)))])]
    )


@given(
    st.lists(
        st.tuples(
            st.integers(0, 2**31 - 1),
            st.lists(st.integers(0, 2**63 - 1) | st.integers(0, 300), max_size=80).map(sorted),
        ),
        max_size=4,
    )
)
def test_every_offset_is_written_as_avro_writes_it(partitions: list[tuple[int, list[int]]]) -> None:
    """The position suffix, built from a table and the offset's high bits, is fastavro's encoding."""
    head = header(SCHEMA)
    datum = CODEC.encode(click(1))
    blocks = [(p, [(o, datum) for o in offsets]) for p, offsets in partitions]
    rows = list(fastavro.reader(io.BytesIO(container_blocks(head, blocks))))
    assert [(r["kafka_partition"], r["kafka_offset"]) for r in rows] == [
        (p, o) for p, offsets in partitions for o in offsets
    ]
    pending = [(p, [(o, datum, CODEC.version) for o in offsets]) for p, offsets in partitions]
    assert container_blocks(head, pending) == container_blocks(head, blocks)


@pytest.mark.parametrize("n", [0, -1, 64, 2**40 + 3, -(2**63)])
def test_the_prefix_reader_reads_the_leading_fields_off_a_datum(n: int) -> None:
    schema = {"type": "record", "name": "r", "fields": [
        {"name": "id", "type": "string"}, {"name": "n", "type": "long"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "rest", "type": ["null", "string"]},
    ]}  # fmt: skip
    at = dt.datetime(2026, 12, 2, 23, 0, 0, 123_000, tzinfo=dt.UTC)
    out = io.BytesIO()
    fastavro.schemaless_writer(
        out, fastavro.parse_schema(schema), {"id": "ü" * 70, "n": n, "at": at, "rest": "x"}
    )
    read = prefix_reader(schema, ["id", "n", "at"])
    assert read is not None and read(out.getvalue()) == {"id": "ü" * 70, "n": n, "at": at}
    assert prefix_reader(schema, ["n"]) is None  # not leading
    assert prefix_reader(schema, ["id", "n", "at", "rest"]) is None  # a union: not an identity field
    with pytest.raises(ValueError):
        read(out.getvalue()[:5])  # a datum cut short is an error, never a made-up identity

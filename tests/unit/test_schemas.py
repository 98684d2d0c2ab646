"""Avro schemas: round trips, header-driven versions, and backward compatibility between versions."""

from __future__ import annotations

import io
import itertools
from decimal import Decimal

import fastavro
import pytest
from fastavro.utils import generate_many
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import (
    CLICK,
    POSTBACK_RAW,
    POSTBACK_REJECTED,
    Codec,
    SchemaError,
    all_versions,
    decimal_bytes,
    decimal_writer,
)


def test_every_topic_schema_is_shipped() -> None:
    assert {POSTBACK_RAW, CLICK, POSTBACK_REJECTED} <= set(all_versions())


def test_postback_round_trip_keeps_decimals_and_maps() -> None:
    codec = Codec(POSTBACK_RAW)
    record = {
        "request_id": "r1",
        "received_at": 1_763_900_000_123,
        "source": "default",
        "method": "GET",
        "click_id": "c1",
        "payout": Decimal("1.500000"),
        "revenue": Decimal("123456789.123456"),
        "currency": "EUR",
        "is_retargeting": False,
        "sender_ip": "127.0.0.1",
        "extra": {"sub9": "x"},
    }
    decoded = codec.decode(codec.encode(record), codec.headers)
    assert decoded["payout"] == Decimal("1.5")
    assert decoded["revenue"] == Decimal("123456789.123456")
    assert isinstance(record["payout"], Decimal)  # the codec writes decimals from a copy, not in place
    assert decoded["extra"] == {"sub9": "x"}
    assert decoded["is_retargeting"] is False
    assert decoded["event_time"] is None
    assert decoded["received_at"].timestamp() == pytest.approx(1_763_900_000.123)


def test_decode_refuses_other_schema_and_garbage() -> None:
    codec = Codec(CLICK)
    with pytest.raises(SchemaError):
        codec.decode(b"", [("schema", b"postback_raw"), ("schema-version", b"1")])
    with pytest.raises(SchemaError):
        codec.decode(b"\xff\xff\xff", codec.headers)
    with pytest.raises(SchemaError):
        codec.decode(b"", [("schema", b"click"), ("schema-version", b"99")])


def test_the_version_the_headers_name_is_the_same_however_often_and_however_passed() -> None:
    """The codec remembers resolved headers: a refusal is never remembered, any form of them reads."""
    codec = Codec(POSTBACK_RAW)
    older = [("schema", b"postback_raw"), ("schema-version", b"1")]
    for _ in range(3):
        assert codec.writer_version(older) == 1
        assert codec.writer_version(tuple(older)) == 1
        assert codec.writer_version(dict(older)) == 1  # type: ignore[arg-type]
        assert codec.writer_version([list(pair) for pair in older]) == 1  # type: ignore[misc]
        assert codec.writer_version(codec.headers) == codec.version
        with pytest.raises(SchemaError):
            codec.writer_version([("schema", b"click"), ("schema-version", b"1")])
        with pytest.raises(SchemaError):
            codec.writer_version([("schema", b"postback_raw"), ("schema-version", b"99")])
    for n in range(200):  # whatever a producer sends, what is remembered stays bounded
        codec.writer_version([("schema", b"postback_raw"), ("schema-version", b"1"), ("x", str(n).encode())])
    assert len(codec._by_headers) <= 64
    assert codec.writer_version(older) == 1


@pytest.mark.parametrize("name", sorted(all_versions()))
def test_each_version_reads_the_previous_versions_data(name: str) -> None:
    """Backward compatibility: a consumer on version N reads what version N-1 producers wrote."""
    versions = all_versions()[name]
    ordered = sorted(versions)
    for old, new in itertools.pairwise(ordered):
        writer, reader = versions[old].parsed, versions[new].parsed
        for record in generate_many(writer, 50):
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, writer, record)
            buf.seek(0)
            fastavro.schemaless_reader(buf, writer, reader)
    # Random records of the newest version round-trip too (the check is not vacuous with one version).
    newest = versions[ordered[-1]].parsed
    for record in generate_many(newest, 50):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, newest, record)
        buf.seek(0)
        assert fastavro.schemaless_reader(buf, newest, newest).keys() == record.keys()


def test_an_incompatible_change_would_be_caught() -> None:
    """The mechanism above rejects a new required field without default (guards the guard)."""
    old = fastavro.parse_schema({"type": "record", "name": "T", "fields": [{"name": "a", "type": "string"}]})
    new = fastavro.parse_schema(
        {
            "type": "record",
            "name": "T",
            "fields": [{"name": "a", "type": "string"}, {"name": "b", "type": "int"}],
        }
    )
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, old, {"a": "x"})
    buf.seek(0)
    with pytest.raises(Exception):  # noqa: B017 - fastavro raises SchemaResolutionError
        fastavro.schemaless_reader(buf, old, new)


# -- decimals written as bytes by the codec, not by fastavro -----------------------------------

_DECIMAL_SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "D",
        "fields": [
            {
                "name": "d",
                "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 6}],
            }
        ],
    }
)


def _fastavro_bytes(value: Decimal) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, _DECIMAL_SCHEMA, {"d": value})
    return buf.getvalue()


@settings(max_examples=500, deadline=None)
@given(st.decimals(allow_nan=False, allow_infinity=False, places=6, min_value=-(10**13), max_value=10**13))
def test_decimal_bytes_are_what_fastavro_writes_or_refuses(value: Decimal) -> None:
    try:
        expected = _fastavro_bytes(value)
    except ValueError:
        with pytest.raises(ValueError):
            decimal_bytes(value, 18, 6)
        return
    via_codec = io.BytesIO()
    fastavro.schemaless_writer(via_codec, _DECIMAL_SCHEMA, {"d": decimal_bytes(value, 18, 6)})
    assert via_codec.getvalue() == expected
    assert fastavro.schemaless_reader(io.BytesIO(expected), _DECIMAL_SCHEMA, None) == {"d": value}


@pytest.mark.parametrize(
    "text", ["0", "-0", "-0.000000", "127", "128", "-128", "-129", "0.000001", "-0.000001"]
)
def test_decimal_bytes_at_the_edges(text: str) -> None:
    via_codec = io.BytesIO()
    fastavro.schemaless_writer(via_codec, _DECIMAL_SCHEMA, {"d": decimal_bytes(Decimal(text), 18, 6)})
    assert via_codec.getvalue() == _fastavro_bytes(Decimal(text))


def test_decimals_too_fine_too_long_or_not_finite_are_refused() -> None:
    for value in (Decimal("1.0000001"), Decimal("NaN"), Decimal("1234567890123.000000")):
        with pytest.raises(ValueError):
            decimal_bytes(value, 18, 6)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**13), max_value=10**13), max_size=30
    )
)
def test_decimal_writer_remembers_bytes_never_refusals(values: list[Decimal]) -> None:
    """The remembering writer gives decimal_bytes' answer for every amount, in any order: an
    amount refused for its exponent (1.2000000) stays refused after an equal one (1.2) was met."""
    write = decimal_writer(18, 6)
    for value in values + [v.scaleb(-1).scaleb(1) for v in values] + values:
        try:
            expected = decimal_bytes(value, 18, 6)
        except ValueError:
            with pytest.raises(ValueError):
                write(value)
            continue
        assert write(value) == expected


def test_decimal_writer_tells_equal_amounts_apart_by_exponent() -> None:
    write = decimal_writer(18, 6)
    assert write(Decimal("1.2")) == decimal_bytes(Decimal("1.2"), 18, 6)
    assert Decimal("1.2000000") == Decimal("1.2")
    with pytest.raises(ValueError):
        write(Decimal("1.2000000"))  # seven places: refused, as fastavro refuses it
    with pytest.raises(ValueError):
        write(Decimal("0E-7"))
    assert write(Decimal("0")) == b"\x00"

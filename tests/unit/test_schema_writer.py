"""The compiled Avro writer (schemas/writer.py) writes fastavro's bytes for every shipped schema."""

from __future__ import annotations

import datetime as dt
import io
import random
from decimal import Decimal
from typing import Any

import fastavro
import pytest

from schemas import Codec, all_versions
from schemas.writer import compile_writer

SCHEMAS = [(name, version) for name, versions in sorted(all_versions().items()) for version in versions]


def _value(kind: Any, rng: random.Random, full: bool) -> Any:
    """A value of `kind`: nullable ones null half the time unless `full`."""
    if isinstance(kind, list):
        other = next(k for k in kind if k != "null")
        return _value(other, rng, full) if full or rng.random() < 0.5 else None
    if isinstance(kind, dict):
        logical = kind.get("logicalType")
        if logical == "timestamp-millis":
            if rng.random() < 0.3:
                return dt.datetime(2026, 1, 2, 3, 4, 5, rng.randrange(10**6), tzinfo=dt.UTC)
            return rng.randrange(-(2**41), 2**42)
        if logical == "decimal":
            scale = int(kind.get("scale", 0))
            digits = rng.randrange(0, 10 ** (int(kind["precision"]) - scale))
            return Decimal(f"{'-' if rng.random() < 0.3 else ''}{digits}.{rng.randrange(10**scale)}")
        if kind["type"] == "record":
            return {f["name"]: _value(f["type"], rng, full) for f in kind["fields"]}
        if kind["type"] == "map":
            return {f"k{i}é": _value(kind["values"], rng, full) for i in range(rng.randrange(4))}
        if kind["type"] == "array":
            return [_value(kind["items"], rng, full) for _ in range(rng.randrange(4))]
        return _value(kind["type"], rng, full)
    return {
        "string": lambda: "".join(rng.choice("aZ09-é€ ") for _ in range(rng.randrange(200))),
        "long": lambda: rng.choice(
            [0, -1, 63, -64, 64, 2**31, -(2**63), 2**63 - 1, rng.randrange(-(2**40), 2**40)]
        ),
        "int": lambda: rng.choice([0, -1, 127, 2**31 - 1, -(2**31), rng.randrange(-1000, 1000)]),
        "boolean": lambda: rng.random() < 0.5,
        "bytes": lambda: rng.randbytes(rng.randrange(300)),
        "null": lambda: None,
    }[kind]()


def _fastavro(codec: Codec, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, codec.schema.parsed, codec._decimals_as_bytes(record))
    return out.getvalue()


@pytest.mark.parametrize(("name", "version"), SCHEMAS)
def test_the_same_bytes_as_fastavro(name: str, version: int) -> None:
    schema = all_versions()[name][version]
    codec = Codec(name)
    codec.schema = schema  # this version, not only the newest
    encode = compile_writer(schema.declared)
    rng = random.Random(f"{name}.{version}")
    for i in range(60):
        record = _value(schema.declared, rng, full=i % 3 == 0)
        if i % 4 == 1:  # nullable fields left out: written as their default, as fastavro does
            record = {k: v for k, v in record.items() if v is not None}
        if any(
            isinstance(v, dict) and any(isinstance(x, Decimal) for x in v.values()) for v in record.values()
        ):
            continue  # nested decimals: fastavro's own conversion differs only in speed
        assert encode(record) == _fastavro(codec, record), (name, version, record)


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("long", 1.7),
        ("long", -1.7),
        ("long", Decimal("3.9")),
        ("long", True),
        ("int", 2.5),
        ({"type": "long", "logicalType": "timestamp-millis"}, 1.5),
        ("boolean", "x"),
    ],
)
def test_what_fastavro_lets_through_outside_unions_goes_through(kind: Any, value: Any) -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "f", "type": kind}]}
    expected = io.BytesIO()
    fastavro.schemaless_writer(expected, fastavro.parse_schema(schema), {"f": value})
    assert compile_writer(schema)({"f": value}) == expected.getvalue()


@pytest.mark.parametrize(
    "kind", [["null", "long"], ["null", {"type": "long", "logicalType": "timestamp-millis"}]]
)
def test_a_float_or_bool_in_a_nullable_long_is_refused_as_by_fastavro(kind: Any) -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "f", "type": kind}]}
    for value in (1.5, True):
        with pytest.raises(ValueError):
            fastavro.schemaless_writer(io.BytesIO(), fastavro.parse_schema(schema), {"f": value})
        with pytest.raises(ValueError):
            compile_writer(schema)({"f": value})


def test_the_codec_uses_it_and_refuses_what_fastavro_refuses() -> None:
    codec = Codec("postback_raw")
    assert codec._write is not None
    record = {
        "request_id": "r",
        "received_at": 1,
        "source": "s",
        "method": "GET",
        "click_id": "c",
        "sender_ip": "127.0.0.1",
        "payout": Decimal("1.5"),
    }
    assert codec.decode(codec.encode(record), codec.headers)["payout"] == Decimal("1.500000")
    bad: list[dict[str, Any]] = [
        {k: v for k, v in record.items() if k != "click_id"},  # required, no default
        {**record, "click_id": 5},  # not a string
        {**record, "received_at": "soon"},  # not a long
        {**record, "payout": Decimal("1.1234567")},  # beyond the scale
        {**record, "payout": Decimal("1" * 19)},  # beyond the precision
        {**record, "extra": {"a": 1}},  # a map of strings
    ]
    for wrong in bad:
        with pytest.raises(ValueError):
            codec.encode(wrong)
        with pytest.raises((ValueError, TypeError)):
            _fastavro(codec, wrong)

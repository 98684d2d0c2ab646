"""The compiled Avro reader (schemas/reader.py) reads what fastavro reads, for every shipped schema."""

from __future__ import annotations

import contextlib
import io
import random
from typing import Any

import fastavro
import pytest

from schemas import Codec, SchemaError, all_versions, latest
from schemas.reader import compile_reader
from tests.unit.test_schema_writer import SCHEMAS, _fastavro, _value

NEWEST = sorted({name for name, _ in SCHEMAS})


def _read_with_fastavro(codec: Codec, payload: bytes) -> Any:
    schema = codec.schema.parsed_millis
    return fastavro.schemaless_reader(io.BytesIO(payload), schema, None)


@pytest.mark.parametrize("name", NEWEST)
def test_the_same_values_as_fastavro(name: str) -> None:
    codec = Codec(name, millis=True)
    assert codec._read is not None, f"{name} is not compiled"
    rng = random.Random(name)
    for i in range(300):
        record = _value(codec.schema.declared, rng, full=i % 3 == 0)
        payload = _fastavro(codec, record)
        assert codec.decode_version(payload, codec.schema) == _read_with_fastavro(codec, payload)


@pytest.mark.parametrize("name", NEWEST)
def test_bytes_that_are_not_a_record_are_refused_where_fastavro_refuses_them(name: str) -> None:
    """Cut or corrupted records: wherever fastavro raises, so does the codec (as SchemaError)."""
    codec = Codec(name, millis=True)
    rng = random.Random(f"bad {name}")
    for _ in range(200):
        payload = _fastavro(codec, _value(codec.schema.declared, rng, full=True))
        cut = payload[: rng.randrange(len(payload))] if payload else b"\x07"
        flipped = bytearray(payload)
        if flipped:
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        for bad in (cut, bytes(flipped)):
            try:
                expected = _read_with_fastavro(codec, bad)
            except Exception:
                with pytest.raises(SchemaError):
                    codec.decode_version(bad, codec.schema)
                continue
            # Stricter than fastavro is fine (a string past the end, a bad branch byte, a varint
            # beyond 64 bits): still refused. What it reads, it reads as fastavro does.
            with contextlib.suppress(SchemaError):
                assert codec.decode_version(bad, codec.schema) == expected


def test_older_versions_are_resolved_by_fastavro() -> None:
    """Only the newest version is compiled: an older writer's record is resolved as before."""
    for name, versions in all_versions().items():
        if len(versions) < 2:
            continue
        codec, oldest = Codec(name, millis=True), versions[min(versions)]
        record = _value(oldest.declared, random.Random(name), full=True)
        old = Codec.__new__(Codec)
        old.__dict__.update(codec.__dict__, schema=oldest, _write=None)
        payload = _fastavro(old, record)
        resolved = fastavro.schemaless_reader(
            io.BytesIO(payload), oldest.parsed_millis, latest(name).parsed_millis
        )
        assert codec.decode_version(payload, oldest.version) == resolved


def test_unsupported_types_are_not_compiled() -> None:
    for schema in ({"type": "enum", "name": "E", "symbols": ["a"]}, ["string", "long"], "double"):
        with pytest.raises(NotImplementedError):
            compile_reader({"type": "record", "name": "R", "fields": [{"name": "f", "type": schema}]})

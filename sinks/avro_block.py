"""A batch of Kafka records' Avro bytes as one Avro container file, for ClickHouse to decode.

Our records are schemaless Avro datums. An Avro object container file is a header (magic, the
writer's schema as JSON, a sync marker) followed by blocks of concatenated datums, so a batch
becomes a container by concatenating bytes, with no decoding in Python. ClickHouse reads it with
`INSERT ... FORMAT Avro` and builds its columns natively: in the sink's profile, fastavro building
one dict per record and Python turning it into a row were most of the time per row.

Each row also needs its Kafka partition and offset. A record datum is its fields' encodings in
order, so appending two fields to the schema and their encodings (zigzag varints) to each datum
gives datums of the extended schema: nothing else in the bytes changes.

The tables that drop records already stored (tables.py `identity`) need a record's identity
before the insert: those fields lead their records, so `prefix_reader` reads just them off the
front of each datum, and the rest is left to ClickHouse too.

Pure functions, no I/O.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from schemas.varint import encode_long, encode_unsigned, read_long
from sinks.tables import OFFSET_COLUMNS

MAGIC = b"Obj\x01"
# Any 16 bytes will do; a constant one makes a batch's container the same bytes on every attempt.
SYNC = b"postbacks.sink.1"


def _bytes(value: bytes) -> bytes:
    return encode_long(len(value)) + value


def with_position_fields(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The record schema plus the two trailing fields `container` appends to every datum."""
    names = {field["name"] for field in schema["fields"]}
    clash = names & set(OFFSET_COLUMNS)
    if clash:
        raise ValueError(f"schema {schema.get('name')} already has fields {sorted(clash)}")
    partition, offset = OFFSET_COLUMNS
    return {
        **schema,
        "fields": [*schema["fields"], {"name": partition, "type": "int"}, {"name": offset, "type": "long"}],
    }


def header(schema: Mapping[str, Any]) -> bytes:
    """The container header for datums of `schema` (already extended by `with_position_fields`)."""
    text = json.dumps(schema, separators=(",", ":")).encode()
    meta = _bytes(b"avro.schema") + _bytes(text) + _bytes(b"avro.codec") + _bytes(b"null")
    return MAGIC + encode_long(2) + meta + encode_long(0) + SYNC


def container(head: bytes, partition: int, records: Sequence[tuple[int, bytes]]) -> bytes:
    """One block holding every (offset, datum) of one partition, each followed by its position.

    `head` is `header(...)` of the extended schema; the datums must have been written with the
    schema it extends (same version), which the caller checks from the records' headers.
    """
    return container_blocks(head, [(partition, records)])


# A datum's position suffix: the partition's varint, then the offset's. An offset's zig-zag
# varint is its low 6 bits (shifted, with the continuation bit once it is 64 or more) followed
# by the varint of offset >> 6, which changes once in 64 consecutive offsets: so each record
# costs one table lookup and one join of two short strings, not a varint loop.
_CONTINUED = [bytes((low | 0x80,)) for low in range(0x80)]


def container_blocks(
    head: bytes, blocks: Sequence[tuple[int, Sequence[tuple[int, bytes] | tuple[int, bytes, int]]]]
) -> bytes:
    """`container` of several partitions' records: one block each, in one file (one insert).

    A record is (offset, datum), or the sink's pending row (offset, datum, version).
    """
    out = [head]
    for partition, records in blocks:
        suffix = encode_long(partition)
        first_bytes = [suffix + byte for byte in _CONTINUED]
        parts: list[bytes] = []
        append = parts.append
        high_of, high = -1, b""
        for record in records:
            offset = record[0]
            append(record[1])
            if offset >= 64:
                if offset >> 6 != high_of:
                    high_of = offset >> 6
                    high = encode_unsigned(high_of)
                append(first_bytes[(offset << 1) & 0x7F] + high)
            else:
                append(suffix + encode_long(offset))
        body = b"".join(parts)
        out += (encode_long(len(records)), encode_long(len(body)), body, SYNC)
    return b"".join(out)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _read_string(data: bytes, pos: int) -> tuple[Any, int]:
    size, pos = read_long(data, pos)
    end = pos + size
    if size < 0 or end > len(data):
        raise ValueError("string past the end of the datum")
    return data[pos:end].decode(), end


def _read_timestamp_millis(data: bytes, pos: int) -> tuple[Any, int]:
    millis, pos = read_long(data, pos)
    return _EPOCH + dt.timedelta(milliseconds=millis), pos


_READERS: dict[str, Callable[[bytes, int], tuple[Any, int]]] = {
    "string": _read_string,
    "int": read_long,
    "long": read_long,
    "timestamp-millis": _read_timestamp_millis,
}


def _kind(avro_type: Any) -> str:
    """The type's name (string, long, timestamp-millis...), "" for a union: no prefix reads one."""
    if isinstance(avro_type, Mapping):
        return str(avro_type.get("logicalType") or avro_type.get("type"))
    return avro_type if isinstance(avro_type, str) else ""


def prefix_reader(
    schema: Mapping[str, Any], names: Sequence[str]
) -> Callable[[bytes], dict[str, Any]] | None:
    """A reader of the fields `names` off a datum of `schema`, if they lead it; else None.

    Only plain (non-union) strings, ints, longs and timestamp-millis: what an identity is made of.
    """
    fields = schema["fields"][: len(names)]
    if [f["name"] for f in fields] != list(names) or any(_kind(f["type"]) not in _READERS for f in fields):
        return None
    readers = [(f["name"], _READERS[_kind(f["type"])]) for f in fields]

    def read(datum: bytes) -> dict[str, Any]:
        out: dict[str, Any] = {}
        pos = 0
        for name, reader in readers:
            out[name], pos = reader(datum, pos)
        return out

    return read

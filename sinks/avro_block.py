"""A batch of Kafka records' Avro bytes as one Avro container file, for ClickHouse to decode.

Our records are schemaless Avro datums. An Avro object container file is a header (magic, the
writer's schema as JSON, a sync marker) followed by blocks of concatenated datums, so a batch
becomes a container by concatenating bytes, with no decoding in Python. ClickHouse reads it with
`INSERT ... FORMAT Avro` and builds its columns natively: in the sink's profile, fastavro building
one dict per record and Python turning it into a row were most of the time per row.

Each row also needs its Kafka partition and offset. A record datum is its fields' encodings in
order, so appending two fields to the schema and their encodings (zigzag varints) to each datum
gives datums of the extended schema: nothing else in the bytes changes.

Pure functions, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sinks.tables import OFFSET_COLUMNS

MAGIC = b"Obj\x01"
# Any 16 bytes will do; a constant one makes a batch's container the same bytes on every attempt.
SYNC = b"postbacks.sink.1"
_ONE_BYTE = [bytes([n]) for n in range(0x80)]


def zigzag_varint(n: int) -> bytes:
    """Avro's encoding of an int or long: zigzag, then 7 bits a byte, low bits first."""
    z = (n << 1) ^ (n >> 63)
    if z < 0x80:
        return _ONE_BYTE[z]
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _bytes(value: bytes) -> bytes:
    return zigzag_varint(len(value)) + value


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
    return MAGIC + zigzag_varint(2) + meta + zigzag_varint(0) + SYNC


def container(head: bytes, partition: int, records: Sequence[tuple[int, bytes]]) -> bytes:
    """One block holding every (offset, datum) of one partition, each followed by its position.

    `head` is `header(...)` of the extended schema; the datums must have been written with the
    schema it extends (same version), which the caller checks from the records' headers.
    """
    suffix = zigzag_varint(partition)
    parts: list[bytes] = []
    append = parts.append
    for offset, datum in records:
        append(datum)
        append(suffix)
        append(zigzag_varint(offset))
    body = b"".join(parts)
    return b"".join((head, zigzag_varint(len(records)), zigzag_varint(len(body)), body, SYNC))

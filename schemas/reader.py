"""Avro's binary decoding of one schema, compiled once into Python closures (the reader's half of writer.py).

fastavro's reader walks the parsed schema for every record. On the stream's hot path every
postback and every click state it touches is decoded, and a reader built once per schema,
that does only what each field needs (a null union's branch byte, a string's length and
bytes, a zig-zag varint), takes well under half of fastavro's time for the same record
(`postbacks bench stream`, docs/benchmarks.md). Its values are fastavro's own: the same
dicts, timestamps as unix milliseconds (the codec's `millis` mode; this reader is used only
there), decimals built with the schema's precision as fastavro builds them
(tests/unit/test_schema_reader.py checks every shipped schema against fastavro).

It reads records written with the schema it was compiled for; resolving an older writer's
version to the newest stays with fastavro (rare: a rolling upgrade). Bytes that do not
decode raise ValueError or IndexError (the codec turns any error into SchemaError, as it
does fastavro's): a string or map running past the end, a union branch the schema lacks,
a boolean that is not 0 or 1. Types it does not compile (enums, fixed, floats, unions of
two non-null types, named references) raise NotImplementedError and the codec keeps fastavro.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Context
from typing import Any

Reader = Callable[[bytes, int], tuple[Any, int]]


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """An Avro long or int at `pos` (zig-zag varint): its value and the position after it."""
    byte = buf[pos]
    if byte < 0x80:
        return (byte >> 1) ^ -(byte & 1), pos + 1
    result, shift = byte & 0x7F, 7
    pos += 1
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            if result >> 64:
                raise ValueError("a varint beyond 64 bits")
            return (result >> 1) ^ -(result & 1), pos
        shift += 7


def _size(buf: bytes, pos: int) -> tuple[int, int]:
    """A length prefix, and where its bytes end (checked: Python's slices would stop short silently)."""
    size, pos = _varint(buf, pos)
    end = pos + size
    if size < 0 or end > len(buf):
        raise ValueError(f"a length of {size} runs past the end of the record")
    return pos, end


def _string(buf: bytes, pos: int) -> tuple[Any, int]:
    start, end = _size(buf, pos)
    return buf[start:end].decode(), end


def _bytes(buf: bytes, pos: int) -> tuple[Any, int]:
    start, end = _size(buf, pos)
    return buf[start:end], end


def _boolean(buf: bytes, pos: int) -> tuple[Any, int]:
    byte = buf[pos]
    if byte > 1:
        raise ValueError(f"boolean byte {byte}")
    return byte == 1, pos + 1


def _null(buf: bytes, pos: int) -> tuple[Any, int]:
    return None, pos


def _decimal(precision: int, scale: int) -> Reader:
    context = Context(prec=precision)  # as fastavro builds its decimals

    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        start, end = _size(buf, pos)
        unscaled = int.from_bytes(buf[start:end], byteorder="big", signed=True)
        return context.create_decimal(unscaled).scaleb(-scale, context), end

    return read


def _nullable(index_of_null: int, read: Reader) -> Reader:
    null_byte, value_byte = (0, 2) if index_of_null == 0 else (2, 0)  # zig-zag of branch 0 and 1

    def read_union(buf: bytes, pos: int) -> tuple[Any, int]:
        branch = buf[pos]
        if branch == null_byte:
            return None, pos + 1
        if branch != value_byte:
            raise ValueError(f"union branch byte {branch}")
        return read(buf, pos + 1)

    return read_union


def _blocks(buf: bytes, pos: int) -> tuple[int, int]:
    """A map's or array's next block: its item count (0 at the end) and where its items start."""
    count, pos = _varint(buf, pos)
    if count < 0:  # a block that gives its size in bytes first
        count = -count
        _, pos = _varint(buf, pos)
    return count, pos


def _map(read: Reader) -> Reader:
    def read_map(buf: bytes, pos: int) -> tuple[Any, int]:
        found: dict[str, Any] = {}
        count, pos = _blocks(buf, pos)
        while count:
            for _ in range(count):
                key, pos = _string(buf, pos)
                found[key], pos = read(buf, pos)
            count, pos = _blocks(buf, pos)
        return found, pos

    return read_map


def _array(read: Reader) -> Reader:
    def read_array(buf: bytes, pos: int) -> tuple[Any, int]:
        items: list[Any] = []
        count, pos = _blocks(buf, pos)
        while count:
            for _ in range(count):
                item, pos = read(buf, pos)
                items.append(item)
            count, pos = _blocks(buf, pos)
        return items, pos

    return read_array


def _record(schema: Mapping[str, Any]) -> Reader:
    fields = [(field["name"], _compile(field["type"])) for field in schema["fields"]]

    def read_record(buf: bytes, pos: int) -> tuple[Any, int]:
        record: dict[str, Any] = {}
        for name, read in fields:
            record[name], pos = read(buf, pos)
        return record, pos

    return read_record


def _compile(schema: Any) -> Reader:
    if isinstance(schema, str):
        primitive = {"string": _string, "bytes": _bytes, "long": _varint, "int": _varint}
        if schema in primitive:
            return primitive[schema]
        if schema == "boolean":
            return _boolean
        if schema == "null":
            return _null
        raise NotImplementedError(f"type {schema!r}")
    if isinstance(schema, list):
        if len(schema) != 2 or "null" not in schema:
            raise NotImplementedError("unions other than [null, T]")
        index_of_null = schema.index("null")
        return _nullable(index_of_null, _compile(schema[1 - index_of_null]))
    kind, logical = schema.get("type"), schema.get("logicalType")
    if kind == "record":
        return _record(schema)
    if kind == "map":
        return _map(_compile(schema["values"]))
    if kind == "array":
        return _array(_compile(schema["items"]))
    if kind == "bytes" and logical == "decimal":
        return _decimal(int(schema["precision"]), int(schema.get("scale", 0)))
    if kind == "long" and logical == "timestamp-millis":
        return _varint  # unix milliseconds: the codec's millis mode
    if logical is None and isinstance(kind, str):
        return _compile(kind)
    raise NotImplementedError(f"type {kind!r} ({logical})")


def compile_reader(schema: Mapping[str, Any]) -> Callable[[bytes], dict[str, Any]]:
    """A decoder of one record of `schema` (the declared JSON), timestamps as unix milliseconds."""
    read = _compile(schema)

    def decode(payload: bytes) -> dict[str, Any]:
        record, _ = read(payload, 0)
        result: dict[str, Any] = record
        return result

    return decode

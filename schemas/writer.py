"""Avro's binary encoding of one schema, compiled once into Python closures.

fastavro's writer walks the parsed schema for every record: on the ingest's hot path that was
its largest single cost (12% of the process, the postback_raw record's 35 fields, most of them
null). A writer built once per schema does only what that schema needs per field: a null
union's branch byte, a string's length and bytes, a long's zig-zag varint. The bytes are
fastavro's own (tests/unit/test_schema_writer.py checks every shipped schema against it) and so
are the refusals that matter: a required field missing, a value of the wrong type, a decimal
beyond its precision or scale -- all ValueError. Schemas using anything else (enums, fixed,
floats, unions of two non-null types, named references) are not compiled: `compile_writer`
raises NotImplementedError and the codec keeps fastavro for them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

Writer = Callable[[bytearray, Any], None]

_MISSING = object()
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_NAIVE = dt.datetime(1970, 1, 1)


def _varint(out: bytearray, n: int) -> None:
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _whole(value: Any, kind: str) -> int:
    """As fastavro outside a union: an int, or a float or Decimal cut to one (toward zero)."""
    if isinstance(value, int):
        return value
    if isinstance(value, float | Decimal):
        return int(value)
    raise ValueError(f"{value!r} is not a {kind}")


def _long(out: bytearray, value: Any) -> None:
    value = _whole(value, "long")
    _varint(out, (value << 1) ^ (value >> 63))


def _int(out: bytearray, value: Any) -> None:
    value = _whole(value, "int")
    _varint(out, (value << 1) ^ (value >> 31))


def _millis(value: Any) -> Any:
    if isinstance(value, dt.datetime):  # as fastavro: naive means UTC
        delta = value - (_EPOCH if value.tzinfo is not None else _EPOCH_NAIVE)
        return (delta.days * 86400 + delta.seconds) * 1000 + int(delta.microseconds / 1000)
    return value


def _timestamp_millis(out: bytearray, value: Any) -> None:
    _long(out, _millis(value))


def _strictly(write: Writer, kinds: type | tuple[type, ...]) -> Writer:
    """In a union fastavro picks the branch by type: a float or a bool is no long there, it is refused."""

    def write_checked(out: bytearray, value: Any) -> None:
        if not isinstance(value, kinds) or isinstance(value, bool):
            raise ValueError(f"{value!r} is not in the union")
        write(out, value)

    return write_checked


def _string(out: bytearray, value: Any) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    data = value.encode()
    _varint(out, len(data) << 1)
    out += data


def _bytes(out: bytearray, value: Any) -> None:
    if not isinstance(value, bytes | bytearray):
        raise ValueError(f"{value!r} is not bytes")
    _varint(out, len(value) << 1)
    out += value


def _boolean(out: bytearray, value: Any) -> None:
    out.append(1 if value else 0)


def _null(out: bytearray, value: Any) -> None:
    if value is not None:
        raise ValueError(f"{value!r} is not null")


def _decimal(precision: int, scale: int) -> Writer:
    from schemas import decimal_bytes  # the same conversion the codec gives fastavro

    def write(out: bytearray, value: Any) -> None:
        _bytes(out, decimal_bytes(value, precision, scale) if isinstance(value, Decimal) else value)

    return write


_PRIMITIVES: dict[str, Writer] = {
    "null": _null,
    "boolean": _boolean,
    "int": _int,
    "long": _long,
    "string": _string,
    "bytes": _bytes,
}


def _nullable(index_of_null: int, write: Writer) -> Writer:
    null_byte, value_byte = (0, 2) if index_of_null == 0 else (2, 0)  # zig-zag branch index

    def write_union(out: bytearray, value: Any) -> None:
        if value is None:
            out.append(null_byte)
        else:
            out.append(value_byte)
            write(out, value)

    return write_union


def _map(write: Writer) -> Writer:
    def write_map(out: bytearray, value: Any) -> None:
        if not isinstance(value, Mapping):
            raise ValueError(f"{value!r} is not a map")
        if value:
            _varint(out, len(value) << 1)
            for key, item in value.items():
                _string(out, key)
                write(out, item)
        out.append(0)

    return write_map


def _array(write: Writer) -> Writer:
    def write_array(out: bytearray, value: Any) -> None:
        if isinstance(value, str | bytes | Mapping):
            raise ValueError(f"{value!r} is not an array")
        items = list(value)
        if items:
            _varint(out, len(items) << 1)
            for item in items:
                write(out, item)
        out.append(0)

    return write_array


def _record(schema: Mapping[str, Any]) -> Writer:
    fields: list[tuple[str, Any, bool, Writer]] = []
    for field in schema["fields"]:
        kind = field["type"]
        nullable = isinstance(kind, list) and "null" in kind
        default = field.get("default", None if nullable else _MISSING)
        # ["null", "string"], most of every record: written inline, no call per field.
        optional_string = kind == ["null", "string"]
        fields.append((field["name"], default, optional_string, _compile(kind)))
    plan = tuple(fields)

    def write_record(out: bytearray, value: Any) -> None:
        if not isinstance(value, Mapping):
            raise ValueError(f"{value!r} is not a record")
        get = value.get
        for name, default, optional_string, write in plan:
            item = get(name, default)
            if optional_string:
                if item is None:
                    out.append(0)
                    continue
                if not isinstance(item, str):
                    raise ValueError(f"{name}: {item!r} is not a string")
                data = item.encode()
                out.append(2)
                _varint(out, len(data) << 1)
                out += data
            elif item is _MISSING:
                raise ValueError(f"no value and no default for {name}")
            else:
                write(out, item)

    return write_record


def _compile(schema: Any) -> Writer:
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return _PRIMITIVES[schema]
        raise NotImplementedError(f"type {schema!r}")
    if isinstance(schema, list):
        if len(schema) == 2 and "null" in schema:
            other = schema[1 - schema.index("null")]
            write = _compile(other)
            if write in (_long, _int):
                write = _strictly(write, int)
            elif write is _timestamp_millis:
                write = _strictly(write, (int, dt.datetime))
            return _nullable(schema.index("null"), write)
        raise NotImplementedError("unions other than [null, T]")
    kind, logical = schema["type"], schema.get("logicalType")
    if kind == "record":
        return _record(schema)
    if kind == "map":
        return _map(_compile(schema["values"]))
    if kind == "array":
        return _array(_compile(schema["items"]))
    if kind == "long" and logical == "timestamp-millis":
        return _timestamp_millis
    if kind == "bytes" and logical == "decimal":
        return _decimal(int(schema["precision"]), int(schema.get("scale", 0)))
    if isinstance(kind, str) and kind in _PRIMITIVES and logical is None:
        return _PRIMITIVES[kind]
    raise NotImplementedError(f"type {kind!r} ({logical})")


def compile_writer(schema: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], bytes]:
    """`record -> bytes` for the schema as declared (JSON); NotImplementedError if it is not covered."""
    write = _compile(schema)

    def encode(record: Mapping[str, Any]) -> bytes:
        out = bytearray()
        write(out, record)
        return bytes(out)

    return encode

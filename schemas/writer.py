"""Avro's binary encoding of one schema, generated once as Python source.

fastavro's writer walks the parsed schema for every record: on the ingest's hot path that was
its largest single cost (12% of the process, the postback_raw record's 35 fields, most of them
null), and on the stream's the conversions (~40 fields) and click states it writes. A writer
built once per schema does only what that schema needs per field: a null union's branch byte,
a string's length and bytes, a long's zig-zag varint. It is one generated function per schema
(schemas/codegen.py says why source and not closures): each field, nested records and the
loops of arrays and maps included, is a few straight lines appending to one bytearray.

The bytes are fastavro's own (tests/unit/test_schema_writer.py and test_schema_codegen.py check
every shipped schema against it) and so are the refusals that matter: a required field missing,
a value of the wrong type, a decimal beyond its precision or scale -- all ValueError. Outside a
union a long or int takes what fastavro takes (an int, a bool, a float or Decimal cut toward
zero); in a [null, long] union fastavro picks the branch by type, so there a float or a bool is
refused, and a timestamp-millis takes an int or a datetime (naive means UTC). Schemas using
anything else (enums, fixed, floats, unions of two non-null types, named references) are not
compiled: `compile_writer` raises NotImplementedError and the codec keeps fastavro for them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, NoReturn

from schemas.codegen import Source, once

_MISSING = object()
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_NAIVE = dt.datetime(1970, 1, 1)


def _refuse(where: str, value: Any, what: str) -> NoReturn:
    if value is _MISSING:
        raise ValueError(f"no value and no default for {where}")
    raise ValueError(f"{where}: {value!r} is not {what}")


def _whole(value: Any, where: str) -> int:
    """As fastavro outside a union: an int, or a float or Decimal cut to one (toward zero)."""
    if isinstance(value, int):
        return value
    if isinstance(value, float | Decimal):
        try:
            return int(value)
        except OverflowError as exc:  # infinity (NaN: ValueError already)
            raise ValueError(f"{where}: {value!r} is not a whole number") from exc
    _refuse(where, value, "a whole number")


def _out_of_range(where: str, value: int) -> NoReturn:
    raise ValueError(f"{where}: {value!r} is beyond a long's 64 bits")


def _millis(value: Any) -> Any:
    if isinstance(value, dt.datetime):  # as fastavro: naive means UTC
        delta = value - (_EPOCH if value.tzinfo is not None else _EPOCH_NAIVE)
        return (delta.days * 86400 + delta.seconds) * 1000 + int(delta.microseconds / 1000)
    return value


def _as_list(value: Any, where: str) -> list[Any]:
    if isinstance(value, str | bytes | Mapping):
        _refuse(where, value, "an array")
    items: Iterable[Any] = value  # anything else iterable, as fastavro (not iterable: TypeError)
    return list(items)


# In the generated function: `out` the bytearray, `append` its append, `n` a varint being written.
# Every other local comes from Source.var; `where` (a field's path) enters only through repr().


def _varint(src: Source, depth: int) -> None:
    """Append `n` (>= 0) as a varint: one comparison and one append when it is below 128."""
    src.line(depth, "while n > 127:")
    src.line(depth + 1, "append((n & 127) | 128)")
    src.line(depth + 1, "n >>= 7")
    src.line(depth, "append(n)")


def _whole_number(src: Source, depth: int, value: str, where: str, strict: bool, bits: int = 64) -> None:
    if strict:  # in a union fastavro picks the branch by type: a float or a bool is no long there
        test = f"not isinstance({value}, int) or isinstance({value}, bool)"
        src.line(depth, f"if {value}.__class__ is not int and ({test}):")
        src.line(depth + 1, f"_refuse({where!r}, {value}, 'in the union')")
        if bits == 32:  # nor an int beyond 32 bits in an int's
            src.line(depth, f"if not -2147483648 <= {value} <= 2147483647:")
            src.line(depth + 1, f"_refuse({where!r}, {value}, 'in the union')")
    else:
        src.line(depth, f"if {value}.__class__ is not int:")
        src.line(depth + 1, f"{value} = _whole({value}, {where!r})")
    # Zig-zag over 64 bits for an int too, as fastavro writes both (an int beyond 32 bits is
    # fastavro's to refuse or not; it does not). Beyond 64 bits it refuses, and so do we.
    src.line(depth, f"n = ({value} << 1) ^ ({value} >> 63)")
    src.line(depth, "if n > 127:")
    src.line(depth + 1, "if n >> 64:")
    src.line(depth + 2, f"_out_of_range({where!r}, {value})")
    src.line(depth + 1, "while n > 127:")
    src.line(depth + 2, "append((n & 127) | 128)")
    src.line(depth + 2, "n >>= 7")
    src.line(depth, "append(n)")


def _timestamp(src: Source, depth: int, value: str, where: str, strict: bool) -> None:
    if strict:
        test = f"not isinstance({value}, (int, _datetime)) or isinstance({value}, bool)"
        src.line(depth, f"if {value}.__class__ is not int and ({test}):")
        src.line(depth + 1, f"_refuse({where!r}, {value}, 'in the union')")
    src.line(depth, f"if isinstance({value}, _datetime):")
    src.line(depth + 1, f"{value} = _millis({value})")
    _whole_number(src, depth, value, where, strict=False)


def _string(src: Source, depth: int, value: str, where: str) -> None:
    data = src.var("d")
    src.line(depth, f"if {value}.__class__ is not str and not isinstance({value}, str):")
    src.line(depth + 1, f"_refuse({where!r}, {value}, 'a string')")
    src.line(depth, f"{data} = {value}.encode()")
    src.line(depth, f"n = len({data}) << 1")
    _varint(src, depth)
    src.line(depth, f"out += {data}")


def _bytes(src: Source, depth: int, value: str, where: str) -> None:
    src.line(depth, f"if not isinstance({value}, (bytes, bytearray)):")
    src.line(depth + 1, f"_refuse({where!r}, {value}, 'bytes')")
    src.line(depth, f"n = len({value}) << 1")
    _varint(src, depth)
    src.line(depth, f"out += {value}")


def _map(src: Source, depth: int, value: str, values: Any, where: str) -> None:
    key, item = src.var("k"), src.var("x")
    src.line(depth, f"if {value}.__class__ is not dict and not isinstance({value}, _Mapping):")
    src.line(depth + 1, f"_refuse({where!r}, {value}, 'a map')")
    src.line(depth, f"if {value}:")
    src.line(depth + 1, f"n = len({value}) << 1")
    _varint(src, depth + 1)
    src.line(depth + 1, f"for {key}, {item} in {value}.items():")
    _string(src, depth + 2, key, f"{where} key")
    _write(src, depth + 2, item, values, f"{where}[]", strict=False)
    src.line(depth, "append(0)")


def _array(src: Source, depth: int, value: str, items: Any, where: str) -> None:
    item = src.var("x")
    src.line(depth, f"if {value}.__class__ is not list:")
    if isinstance(src, _Source) and src.dicts:  # an iterator read here could not be read again there
        src.line(depth + 1, "raise _Fallback")
    else:
        src.line(depth + 1, f"{value} = _as_list({value}, {where!r})")
    src.line(depth, f"if {value}:")
    src.line(depth + 1, f"n = len({value}) << 1")
    _varint(src, depth + 1)
    src.line(depth + 1, f"for {item} in {value}:")
    _write(src, depth + 2, item, items, f"{where}[]", strict=False)
    src.line(depth, "append(0)")


def _record(src: Source, depth: int, value: str, schema: Mapping[str, Any], where: str) -> None:
    dicts = isinstance(src, _Source) and src.dicts
    if dicts:  # any other mapping: the general function (a defaultdict would invent missing fields)
        src.line(depth, f"if {value}.__class__ is not dict:")
        src.line(depth + 1, "raise _Fallback")
    else:
        src.line(depth, f"if {value}.__class__ is not dict and not isinstance({value}, _Mapping):")
        src.line(depth + 1, f"_refuse({where!r}, {value}, 'a record')")
        get = src.var("get")
        src.line(depth, f"{get} = {value}.get")
    for field in schema["fields"]:
        name, kind = field["name"], field["type"]
        if not isinstance(name, str):
            raise NotImplementedError(f"field name {name!r}")
        path = f"{where}.{name}" if where else name
        nullable = isinstance(kind, list) and "null" in kind
        default = field.get("default", None if nullable else _MISSING)
        item = src.var()
        if dicts:  # a missing field: KeyError, and the general function writes its default
            src.line(depth, f"{item} = {value}[{name!r}]")
        elif default is None:
            src.line(depth, f"{item} = {get}({name!r})")
        else:
            src.line(depth, f"{item} = {get}({name!r}, {src.const(default)})")
        if default is _MISSING and not dicts:
            src.line(depth, f"if {item} is _MISSING:")
            src.line(depth + 1, f"_refuse({path!r}, {item}, 'set')")
        _write(src, depth, item, kind, path, strict=False)


def _nullable(src: Source, depth: int, value: str, index_of_null: int, other: Any, where: str) -> None:
    null_byte, value_byte = (0, 2) if index_of_null == 0 else (2, 0)  # zig-zag branch index
    src.line(depth, f"if {value} is None:")
    src.line(depth + 1, f"append({null_byte})")
    src.line(depth, "else:")
    if other == "string" and value_byte == 2:  # most fields of most records: branch and length in one step
        data = src.var("d")
        src.line(depth + 1, f"if {value}.__class__ is not str and not isinstance({value}, str):")
        src.line(depth + 2, f"_refuse({where!r}, {value}, 'a string')")
        src.line(depth + 1, f"{data} = {value}.encode()")
        src.line(depth + 1, f"n = len({data})")
        src.line(depth + 1, "if n < 64:")
        src.line(depth + 2, "out += _BRANCH_AND_LENGTH[n]")
        src.line(depth + 1, "else:")
        src.line(depth + 2, "append(2)")
        src.line(depth + 2, "n <<= 1")
        _varint(src, depth + 2)
        src.line(depth + 1, f"out += {data}")
        return
    src.line(depth + 1, f"append({value_byte})")
    _write(src, depth + 1, value, other, where, strict=True)


def _write(src: Source, depth: int, value: str, schema: Any, where: str, strict: bool) -> None:
    """Lines that append the local `value` as `schema` (`strict`: the non-null branch of a union)."""
    if isinstance(schema, str):
        if schema == "long":
            _whole_number(src, depth, value, where, strict)
        elif schema == "int":
            _whole_number(src, depth, value, where, strict, bits=32)
        elif schema == "string":
            _string(src, depth, value, where)
        elif schema == "bytes":
            _bytes(src, depth, value, where)
        elif schema == "boolean":
            if strict:  # in a union only a bool is a boolean to fastavro (outside one, any truth value)
                src.line(depth, f"if {value}.__class__ is not bool:")
                src.line(depth + 1, f"_refuse({where!r}, {value}, 'in the union')")
            src.line(depth, f"append(1 if {value} else 0)")
        elif schema == "null":
            src.line(depth, f"if {value} is not None:")
            src.line(depth + 1, f"_refuse({where!r}, {value}, 'null')")
        else:
            raise NotImplementedError(f"type {schema!r}")
        return
    if isinstance(schema, list):
        if len(schema) != 2 or "null" not in schema:
            raise NotImplementedError("unions other than [null, T]")
        index_of_null = schema.index("null")
        _nullable(src, depth, value, index_of_null, schema[1 - index_of_null], where)
        return
    kind, logical = schema["type"], schema.get("logicalType")
    if kind == "record":
        _record(src, depth, value, schema, where)
    elif kind == "map":
        _map(src, depth, value, schema["values"], where)
    elif kind == "array":
        _array(src, depth, value, schema["items"], where)
    elif kind == "long" and logical == "timestamp-millis":
        _timestamp(src, depth, value, where, strict)
    elif kind == "bytes" and logical == "decimal":
        from schemas import decimal_writer  # the codec's own conversion for fastavro (a cycle at import)

        precision, scale = int(schema["precision"]), int(schema.get("scale", 0))
        src.line(depth, f"if isinstance({value}, _Decimal):")
        write = src.const(decimal_writer(precision, scale))
        src.line(depth + 1, f"{value} = {write}({value})")
        _bytes(src, depth, value, where)
    elif isinstance(kind, str) and logical is None and kind != "record":
        _write(src, depth, value, kind, where, strict)
    else:
        raise NotImplementedError(f"type {kind!r} ({logical})")


class _Source(Source):
    """The writer's source: `dicts` while generating the function for records that are plain dicts."""

    dicts = False


class _Fallback(Exception):
    """Not an error: the record is not all plain dicts, so the general function writes it."""


_BRANCH_AND_LENGTH = tuple(bytes((2, n << 1)) for n in range(64))  # [null, string]'s branch 1, a length < 64


def writer_source(schema: Mapping[str, Any]) -> Source:
    """The generated `encode(record)` for `schema`, not yet compiled (compile_writer; tests read it).

    Two functions: `general` takes any mapping (missing fields get their defaults), and `encode`,
    the one returned, reads plain dicts that hold every field (the stream's records) by subscript,
    no `.get` call per field, and hands any record it cannot read that way (fewer keys than fields,
    a missing field, a nested mapping that is not a dict) to `general`, which writes it or refuses
    it: the same bytes and refusals either way.
    """
    src = _Source(
        _MISSING=_MISSING,
        _Mapping=Mapping,
        _Decimal=Decimal,
        _datetime=dt.datetime,
        _refuse=_refuse,
        _whole=_whole,
        _out_of_range=_out_of_range,
        _millis=_millis,
        _as_list=_as_list,
        _Fallback=_Fallback,
        _BRANCH_AND_LENGTH=_BRANCH_AND_LENGTH,
    )
    src.line(0, "def general(record):")
    src.line(1, "out = bytearray()")
    src.line(1, "append = out.append")
    _write(src, 1, "record", schema, "", strict=False)
    src.line(1, "return bytes(out)")
    if isinstance(schema, Mapping) and schema.get("type") == "record":
        src.dicts = True
        src.line(0, "def encode(record):")
        src.line(1, f"if record.__class__ is not dict or len(record) < {len(schema['fields'])!r}:")
        src.line(2, "return general(record)")  # fields left out for their defaults (the ingest's records)
        src.line(1, "out = bytearray()")
        src.line(1, "append = out.append")
        src.line(1, "try:")
        _write(src, 2, "record", schema, "", strict=False)
        src.line(1, "except (KeyError, _Fallback):")
        src.line(2, "return general(record)")
        src.line(1, "return bytes(out)")
    else:
        src.line(0, "encode = general")
    return src


def compile_writer(schema: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], bytes]:
    """`record -> bytes` for the schema as declared (JSON); NotImplementedError if it is not covered."""
    encode: Callable[[Mapping[str, Any]], bytes] = once(
        "writer", schema, lambda: writer_source(schema).build("encode")
    )
    return encode

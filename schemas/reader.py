"""Avro's binary decoding of one schema, generated once as Python source (the reader's half of writer.py).

fastavro's reader walks the parsed schema for every record. On the stream's hot path every
postback and every click state it touches is decoded, and a reader built once per schema,
that does only what each field needs (a null union's branch byte, a string's length and
bytes, a zig-zag varint), takes a fraction of fastavro's time for the same record
(`postbacks bench stream`, docs/benchmarks.md). It is one generated function per schema
(schemas/codegen.py says why source and not closures): every field, nested records and the
loops of arrays and maps included, is a few straight lines on local variables, a varint
below 0x80 is one comparison, and no field returns a `(value, pos)` tuple.

Its values are fastavro's own: the same dicts, timestamps as unix milliseconds (the codec's
`millis` mode; this reader is used only there), decimals built with the schema's precision
as fastavro builds them (tests/unit/test_schema_reader.py and test_schema_codegen.py check
every shipped schema against fastavro).

It reads records written with the schema it was compiled for; resolving an older writer's
version to the newest stays with fastavro (rare: a rolling upgrade). Bytes that do not
decode raise ValueError or IndexError (the codec turns any error into SchemaError, as it
does fastavro's): a string or map running past the end, a union branch the schema lacks,
a boolean that is not 0 or 1, a varint beyond 64 bits. Types it does not compile (enums,
fixed, floats, unions of two non-null types, named references) raise NotImplementedError
and the codec keeps fastavro.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Context
from typing import Any

from schemas.codegen import Source, once

# In the generated function: `buf` the bytes, `pos` where the next field starts, `stop` len(buf),
# `b` the byte just read, `s` a varint's shift. Every other local comes from Source.var.


def _varint(src: Source, depth: int, target: str) -> None:
    """`target` = the zig-zag varint at pos; one byte (the common case) is one test."""
    line = src.line
    line(depth, "b = buf[pos]")
    line(depth, "pos += 1")
    line(depth, "if b < 128:")
    line(depth + 1, f"{target} = (b >> 1) ^ -(b & 1)")
    line(depth, "elif buf[pos] < 128:")  # two bytes: lengths up to 8 KiB, offsets up to 8191
    line(depth + 1, f"{target} = (b & 127) | (buf[pos] << 7)")
    line(depth + 1, "pos += 1")
    line(depth + 1, f"{target} = ({target} >> 1) ^ -({target} & 1)")
    line(depth, "else:")
    line(depth + 1, f"{target} = b & 127")
    line(depth + 1, "s = 7")
    line(depth + 1, "while True:")
    line(depth + 2, "b = buf[pos]")
    line(depth + 2, "pos += 1")
    line(depth + 2, f"{target} |= (b & 127) << s")
    line(depth + 2, "if b < 128:")
    line(depth + 3, "break")
    line(depth + 2, "s += 7")
    line(depth + 1, f"if {target} >> 64:")
    line(depth + 2, "raise ValueError('a varint beyond 64 bits')")
    line(depth + 1, f"{target} = ({target} >> 1) ^ -({target} & 1)")


def _span(src: Source, depth: int) -> str:
    """Read a length prefix; returns the local holding where its bytes end (checked: slices stop short)."""
    size, end = src.var("n"), src.var("e")
    _varint(src, depth, size)
    src.line(depth, f"{end} = pos + {size}")
    src.line(depth, f"if {size} < 0 or {end} > stop:")
    src.line(depth + 1, f"raise ValueError('a length of %d runs past the end of the record' % {size})")
    return end


def _string(src: Source, depth: int, target: str) -> None:
    end = _span(src, depth)
    src.line(depth, f"{target} = buf[pos:{end}].decode()")
    src.line(depth, f"pos = {end}")


def _bytes(src: Source, depth: int, target: str) -> None:
    end = _span(src, depth)
    src.line(depth, f"{target} = buf[pos:{end}]")
    src.line(depth, f"pos = {end}")


def _boolean(src: Source, depth: int, target: str) -> None:
    src.line(depth, "b = buf[pos]")
    src.line(depth, "if b > 1:")
    src.line(depth + 1, "raise ValueError('boolean byte %d' % b)")
    src.line(depth, f"{target} = b == 1")
    src.line(depth, "pos += 1")


def _decimal(src: Source, depth: int, target: str, precision: int, scale: int) -> None:
    context = src.const(Context(prec=precision))  # as fastavro builds its decimals
    end = _span(src, depth)
    unscaled = f"int.from_bytes(buf[pos:{end}], 'big', signed=True)"
    src.line(depth, f"{target} = {context}.scaleb({unscaled}, {-scale!r})")
    src.line(depth, f"pos = {end}")


def _blocks(src: Source, depth: int, read_items: Callable[[int], None]) -> None:
    """A map's or array's blocks: a count (0 at the end; negative: its size in bytes follows), then items."""
    count = src.var("c")
    src.line(depth, "while True:")
    _varint(src, depth + 1, count)
    src.line(depth + 1, f"if not {count}:")
    src.line(depth + 2, "break")
    src.line(depth + 1, f"if {count} < 0:")
    src.line(depth + 2, f"{count} = -{count}")
    _varint(src, depth + 2, src.var("skip"))
    src.line(depth + 1, f"for _ in range({count}):")
    read_items(depth + 2)


def _map(src: Source, depth: int, target: str, values: Any) -> None:
    src.line(depth, f"{target} = {{}}")
    key, item = src.var("k"), src.var("x")

    def read_items(inner: int) -> None:
        _string(src, inner, key)
        _read(src, inner, item, values)
        src.line(inner, f"{target}[{key}] = {item}")

    _blocks(src, depth, read_items)


def _array(src: Source, depth: int, target: str, items: Any) -> None:
    append, item = src.var("append"), src.var("x")
    src.line(depth, f"{target} = []")
    src.line(depth, f"{append} = {target}.append")

    def read_items(inner: int) -> None:
        _read(src, inner, item, items)
        src.line(inner, f"{append}({item})")

    _blocks(src, depth, read_items)


def _record(src: Source, depth: int, target: str, schema: Mapping[str, Any]) -> None:
    fields = []
    for field in schema["fields"]:
        name = field["name"]
        if not isinstance(name, str):
            raise NotImplementedError(f"field name {name!r}")
        fields.append((name, field["type"]))
    if sum(_null_first(kind) for _, kind in fields) < _TEMPLATE_FROM:
        entries = []
        for name, kind in fields:
            value = src.var()
            _read(src, depth, value, kind)
            entries.append(f"{name!r}: {value}")
        src.line(depth, f"{target} = {{{', '.join(entries)}}}")
        return
    # Mostly nullable fields (a postback, a click): start from a copy of an all-null record,
    # a null field costs one byte test, and only the fields that hold a value are stored.
    template = src.const(dict.fromkeys(name for name, _ in fields))
    src.line(depth, f"{target} = {template}.copy()")
    for name, kind in fields:
        value = src.var()
        if _null_first(kind):
            src.line(depth, "if buf[pos]:")
            src.line(depth + 1, "if buf[pos] != 2:")
            src.line(depth + 2, "raise ValueError('union branch byte %d' % buf[pos])")
            src.line(depth + 1, "pos += 1")
            _read(src, depth + 1, value, kind[1])
            src.line(depth + 1, f"{target}[{name!r}] = {value}")
            src.line(depth, "else:")
            src.line(depth + 1, "pos += 1")
        else:
            _read(src, depth, value, kind)
            src.line(depth, f"{target}[{name!r}] = {value}")


_TEMPLATE_FROM = 4  # nullable fields in a record from which the all-null template pays


def _null_first(kind: Any) -> bool:
    return isinstance(kind, list) and len(kind) == 2 and kind[0] == "null"


def _nullable(src: Source, depth: int, target: str, index_of_null: int, other: Any) -> None:
    null_byte, value_byte = (0, 2) if index_of_null == 0 else (2, 0)  # zig-zag of branch 0 and 1
    src.line(depth, "b = buf[pos]")
    src.line(depth, "pos += 1")
    src.line(depth, f"if b == {null_byte}:")
    src.line(depth + 1, f"{target} = None")
    src.line(depth, f"elif b == {value_byte}:")
    _read(src, depth + 1, target, other)
    src.line(depth, "else:")
    src.line(depth + 1, "raise ValueError('union branch byte %d' % b)")


def _read(src: Source, depth: int, target: str, schema: Any) -> None:
    """Lines that read one value of `schema` at pos into the local `target` and move pos past it."""
    if isinstance(schema, str):
        if schema in ("long", "int"):
            _varint(src, depth, target)
        elif schema == "string":
            _string(src, depth, target)
        elif schema == "bytes":
            _bytes(src, depth, target)
        elif schema == "boolean":
            _boolean(src, depth, target)
        elif schema == "null":
            src.line(depth, f"{target} = None")
        else:
            raise NotImplementedError(f"type {schema!r}")
        return
    if isinstance(schema, list):
        if len(schema) != 2 or "null" not in schema:
            raise NotImplementedError("unions other than [null, T]")
        index_of_null = schema.index("null")
        _nullable(src, depth, target, index_of_null, schema[1 - index_of_null])
        return
    kind, logical = schema.get("type"), schema.get("logicalType")
    if kind == "record":
        _record(src, depth, target, schema)
    elif kind == "map":
        _map(src, depth, target, schema["values"])
    elif kind == "array":
        _array(src, depth, target, schema["items"])
    elif kind == "bytes" and logical == "decimal":
        _decimal(src, depth, target, int(schema["precision"]), int(schema.get("scale", 0)))
    elif kind == "long" and logical == "timestamp-millis":
        _varint(src, depth, target)  # unix milliseconds: the codec's millis mode
    elif logical is None and isinstance(kind, str):
        _read(src, depth, target, kind)
    else:
        raise NotImplementedError(f"type {kind!r} ({logical})")


def reader_source(schema: Mapping[str, Any]) -> Source:
    """The generated `decode(buf)` for `schema`, not yet compiled (compile_reader; tests read it)."""
    src = Source()
    src.line(0, "def decode(buf):")
    src.line(1, "pos = 0")
    src.line(1, "stop = len(buf)")
    _read(src, 1, "record", schema)
    src.line(1, "return record")
    return src


def compile_reader(schema: Mapping[str, Any]) -> Callable[[bytes], dict[str, Any]]:
    """A decoder of one record of `schema` (the declared JSON), timestamps as unix milliseconds."""
    decode: Callable[[bytes], dict[str, Any]] = once(
        "reader", schema, lambda: reader_source(schema).build("decode")
    )
    return decode

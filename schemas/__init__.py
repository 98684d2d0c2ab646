"""Avro schemas of every Kafka topic, versioned, and the codec that reads and writes them.

Records are written schemaless (no per-message schema, no registry round trip) and
carry the writer's schema name and version in Kafka headers. A reader resolves the
writer's version against the newest it knows, so producers and consumers can be
upgraded one at a time as long as each new version is backward-compatible with the
previous one (tests/unit/test_schemas.py checks that with fastavro's resolution).

Files live in `schemas/avro/<name>.v<N>.avsc`.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Context, Decimal, DecimalException, Inexact, InvalidOperation, Rounded
from functools import cache
from importlib.resources import files
from typing import Any

import fastavro

from schemas.reader import compile_reader
from schemas.writer import compile_writer

SCHEMA_HEADER = "schema"
VERSION_HEADER = "schema-version"

_FILE_NAME = re.compile(r"^(?P<name>[a-z_]+)\.v(?P<version>\d+)\.avsc$")

Headers = Sequence[tuple[str, bytes]]


def schema_name(headers: Any) -> str | None:
    """The schema a record's headers name (Faust hands headers over as a mapping or as pairs)."""
    pairs = headers.items() if isinstance(headers, dict) else (headers or ())
    for key, value in pairs:
        if key == SCHEMA_HEADER:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return None


class SchemaError(ValueError):
    """A message cannot be decoded: unknown schema, missing headers or bad bytes."""


@dataclass(frozen=True, slots=True)
class VersionedSchema:
    name: str
    version: int
    parsed: Any  # fastavro's parsed schema
    parsed_millis: Any  # the same with timestamp-millis read as plain ints (unix ms)
    headers: list[tuple[str, bytes]]  # what a record written with this version carries; built once
    declared: Any  # the schema as written in its file (JSON), for readers outside Python (ClickHouse)
    decimals: tuple[tuple[str, int, int], ...]  # top-level bytes/decimal fields: (name, precision, scale)


@cache
def all_versions() -> dict[str, dict[int, VersionedSchema]]:
    """Every schema file shipped with the package: name -> version -> schema."""
    found: dict[str, dict[int, VersionedSchema]] = {}
    for entry in files(__name__).joinpath("avro").iterdir():
        match = _FILE_NAME.match(entry.name)
        if not match:
            continue
        raw = json.loads(entry.read_text(encoding="utf-8"))
        name, version = match["name"], int(match["version"])
        found.setdefault(name, {})[version] = VersionedSchema(
            name,
            version,
            fastavro.parse_schema(raw),
            fastavro.parse_schema(_without_timestamps(raw)),
            [(SCHEMA_HEADER, name.encode()), (VERSION_HEADER, str(version).encode())],
            raw,
            _decimal_fields(raw),
        )
    return found


def _decimal_fields(schema: Mapping[str, Any]) -> tuple[tuple[str, int, int], ...]:
    found = []
    for field in schema.get("fields", []):
        for kind in field["type"] if isinstance(field["type"], list) else [field["type"]]:
            if (
                isinstance(kind, dict)
                and kind.get("type") == "bytes"
                and kind.get("logicalType") == "decimal"
            ):
                found.append((field["name"], int(kind["precision"]), int(kind.get("scale", 0))))
    return tuple(found)


def decimal_bytes(value: Decimal, precision: int, scale: int) -> bytes:
    """A Decimal as Avro's bytes/decimal: the unscaled value, big-endian two's complement.

    fastavro accepts these bytes for a decimal field and writes them as they are; building
    them here costs a fraction of fastavro's own conversion, which was the larger part of
    encoding a postback or a conversion (several amounts each). Same bytes, same refusals.

    The common amount takes one exact quantize instead of walking its digit tuple: the
    quantize traps if digits lie below the scale (zeros included, as the refusal counts
    them), and an amount whose magnitude leaves room below the precision cannot hold too
    many digits. Anything else (zero, NaN, infinities, amounts near either limit, refusals)
    goes the digit by digit way.
    """
    steps = _SCALES.get(scale) or _scale_steps(scale)
    try:
        _EXACT.quantize(value, steps[0])  # only its traps matter: digits below the scale
        if value and value.adjusted() + scale < precision:
            unscaled = int(value * steps[1])  # exact: an integer (NaN: ValueError, the slow way says why)
            if unscaled > 0:  # a spare top bit makes it two's complement (and skips a keyword's cost)
                return unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big")
            return unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)
    except (DecimalException, ValueError):
        pass
    return _decimal_bytes_by_digits(value, precision, scale)


@cache  # one writer, and so one memory of amounts, per precision and scale
def decimal_writer(precision: int, scale: int) -> Callable[[Decimal], bytes]:
    """`decimal_bytes` for one precision and scale, remembering the bytes of amounts already met.

    Why. A conversion carries five amounts, and most repeat from one record to the next: an
    offer's payout, its value in USD, the day's rate of a currency. Looking up an amount's
    bytes costs a fifth of building them again. The key is the amount's text, not the Decimal:
    equal Decimals may differ in exponent (1.2 and 1.2000000), and the refusals depend on it
    (digits below the scale), while the text gives back sign, digits and exponent exactly. Only
    bytes are remembered, never a refusal, and at most `_REMEMBERED` amounts, forgotten all at
    once when full (amounts that never repeat cost one lookup more each).
    """
    memo: dict[str, bytes] = {}

    def write(value: Decimal) -> bytes:
        text = str(value)
        found = memo.get(text)
        if found is None:
            found = decimal_bytes(value, precision, scale)
            if len(memo) >= _REMEMBERED:
                memo.clear()
            memo[text] = found
        return found

    return write


_REMEMBERED = 4096
_EXACT = Context(prec=200, traps=[Rounded, Inexact, InvalidOperation])
_SCALES: dict[int, tuple[Decimal, Decimal]] = {}


def _scale_steps(scale: int) -> tuple[Decimal, Decimal]:
    """10**-scale (the quantum) and 10**scale (the shift to the unscaled integer), made once per scale."""
    steps = _SCALES[scale] = (Decimal(1).scaleb(-scale, _EXACT), Decimal(10**scale))
    return steps


def _decimal_bytes_by_digits(value: Decimal, precision: int, scale: int) -> bytes:
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        raise ValueError(f"decimal {value} is not finite")
    if len(digits) > precision:
        raise ValueError("The decimal precision is bigger than allowed by schema")
    if -exponent > scale:
        raise ValueError("Scale provided in schema does not match the decimal")
    unscaled = 0
    for digit in digits:
        unscaled = unscaled * 10 + digit
    unscaled *= int(10 ** (exponent + scale))  # >= 1: the scale check above
    if sign:
        unscaled = -unscaled
    return unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)


def _without_timestamps(schema: Any) -> Any:
    """A copy of a schema whose timestamp-millis fields read back as ints.

    The stream computes with unix milliseconds; building a datetime per field per
    event only to turn it back into a number is waste on the hot path.
    """
    if isinstance(schema, dict):
        if schema.get("logicalType") == "timestamp-millis":
            return schema["type"]
        return {k: _without_timestamps(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_without_timestamps(item) for item in schema]
    return schema


def latest(name: str) -> VersionedSchema:
    versions = all_versions().get(name)
    if not versions:
        raise SchemaError(f"unknown schema {name!r}")
    return versions[max(versions)]


_HEADERS_REMEMBERED = 64


class Codec:
    """Encoder/decoder for one topic's schema.

    `millis=True` reads timestamps as unix milliseconds (ints) instead of datetimes;
    writing accepts either.
    """

    def __init__(self, name: str, millis: bool = False) -> None:
        self.schema = latest(name)
        self.headers = self.schema.headers
        self.version = self.schema.version
        self._versions = all_versions()[name]
        self._millis = millis
        try:  # the same bytes as fastavro's, several times faster (schemas/writer.py)
            self._write: Callable[[Mapping[str, Any]], bytes] | None = compile_writer(self.schema.declared)
        except NotImplementedError:
            self._write = None
        self._read: Callable[[bytes], dict[str, Any]] | None = None
        self._by_headers: dict[tuple[tuple[str, bytes], ...], VersionedSchema] = {}
        if millis:  # the same values as fastavro's for the newest version, faster (schemas/reader.py)
            with contextlib.suppress(NotImplementedError):
                self._read = compile_reader(self.schema.declared)

    def encode(self, record: Mapping[str, Any]) -> bytes:
        if self._write is not None:
            return self._write(record)
        if self.schema.decimals:
            record = self._decimals_as_bytes(record)
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, self.schema.parsed, record)
        return buf.getvalue()

    def _decimals_as_bytes(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        copy: dict[str, Any] | None = None
        for name, precision, scale in self.schema.decimals:
            value = record.get(name)
            if isinstance(value, Decimal):
                if copy is None:
                    copy = dict(record)
                copy[name] = decimal_bytes(value, precision, scale)
        return record if copy is None else copy

    def decode(self, payload: bytes, headers: Headers | None = None) -> dict[str, Any]:
        """Decode with the writer's version from the headers, resolved to the newest schema."""
        return self.decode_version(payload, self._writer_schema(headers))

    def decode_version(self, payload: bytes, writer: VersionedSchema | int) -> dict[str, Any]:
        """Decode bytes written with a known version (e.g. stored alongside in a state record)."""
        if isinstance(writer, int):
            try:
                writer = self._versions[writer]
            except KeyError as exc:
                raise SchemaError(f"unknown version {writer} of {self.schema.name}") from exc
        if writer is self.schema and self._read is not None:
            try:
                return self._read(payload)
            except Exception as exc:  # bytes that are not a record of this schema
                raise SchemaError(f"cannot decode {self.schema.name} v{writer.version}: {exc!r}") from exc
        if self._millis:
            writer_schema, reader_schema = writer.parsed_millis, self.schema.parsed_millis
        else:
            writer_schema, reader_schema = writer.parsed, self.schema.parsed
        if writer is self.schema:
            reader_schema = None  # written with the newest version: nothing to resolve (and cheaper)
        try:
            result = fastavro.schemaless_reader(io.BytesIO(payload), writer_schema, reader_schema)
        except Exception as exc:  # fastavro raises assorted errors on corrupt input
            raise SchemaError(f"cannot decode {self.schema.name} v{writer.version}: {exc}") from exc
        if not isinstance(result, dict):
            raise SchemaError(f"{self.schema.name} decoded to {type(result).__name__}, not a record")
        return result

    def headers_for(self, version: int) -> list[tuple[str, bytes]]:
        """Headers for bytes written with `version` (a replay may re-send bytes of an older one)."""
        return self._versions[version].headers

    def writer_version(self, headers: Headers | None) -> int:
        return self._writer_schema(headers).version

    def _writer_schema(self, headers: Headers | None) -> VersionedSchema:
        """The version the headers name, remembered per distinct headers (a topic has a handful).

        Read for every record a consumer takes: resolving the same few headers again was a
        fifth of the stream worker's click path.
        """
        if not headers:
            return self.schema
        if headers.__class__ is tuple or headers.__class__ is list:  # aiokafka's, ours: no ABC check (slow)
            pairs: Any = headers
        else:
            pairs = headers.items() if isinstance(headers, Mapping) else headers
        try:
            key = tuple(pairs)
            found = self._by_headers.get(key)
        except TypeError:  # pairs that do not hash (lists): resolved each time
            return self._resolve(headers)
        if found is None:
            found = self._resolve(headers)
            if len(self._by_headers) < _HEADERS_REMEMBERED:  # bounded whatever a producer sends
                self._by_headers[key] = found
        return found

    def _resolve(self, headers: Headers) -> VersionedSchema:
        values = dict(headers)
        name = values.get(SCHEMA_HEADER)
        if name is not None and name.decode(errors="replace") != self.schema.name:
            raise SchemaError(f"message has schema {name!r}, expected {self.schema.name!r}")
        raw_version = values.get(VERSION_HEADER)
        if raw_version is None:
            return self.schema
        try:
            return self._versions[int(raw_version)]
        except (ValueError, KeyError) as exc:
            raise SchemaError(f"unknown version {raw_version!r} of {self.schema.name}") from exc


POSTBACK_RAW = "postback_raw"
CLICK = "click"
POSTBACK_REJECTED = "postback_rejected"
CONVERSION = "conversion"
POSTBACK_DUPLICATE = "postback_duplicate"
CLICK_STATE = "click_state"
PENDING_INDEX = "pending_index"
STREAM_TICK = "stream_tick"
FX_RATE = "fx_rate"
DEAD_LETTER = "dead_letter"
OUTBOUND_ATTEMPT = "outbound_attempt"
OUTBOUND_DELIVERY = "outbound_delivery"
OUTBOUND_DEAD_LETTER = "outbound_dead_letter"
IMPRESSION = "impression"
VIEW_POSTBACK = "view_postback"
VIEW_STATE = "view_state"

"""The generated Avro codec (schemas/writer.py, reader.py) against fastavro, on values Hypothesis picks.

test_schema_writer.py and test_schema_reader.py draw from one seeded generator; here Hypothesis
searches every shipped schema's value space (unicode, the ends of each integer range, datetimes
in and out of UTC, decimals up to their precision, maps and arrays of any size, fields left out)
and shrinks what it finds. Writing: the same bytes as fastavro, and wherever fastavro refuses a
record, the codec refuses it too. Reading: the same values as fastavro, for the newest versions.
Also: field names are never source text, so a hostile schema cannot inject code, and a schema
Python cannot compile is left to fastavro.
"""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import Codec, all_versions
from schemas.reader import compile_reader, reader_source
from schemas.writer import compile_writer, writer_source

SCHEMAS = [(name, version) for name, versions in sorted(all_versions().items()) for version in versions]
NEWEST = sorted(all_versions())
ZONES = [dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)), dt.timezone(dt.timedelta(hours=-7))]
TEXT = st.text(max_size=80)
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def values(kind: Any) -> st.SearchStrategy[Any]:
    """Any value fastavro writes for `kind` (a declared Avro type)."""
    if isinstance(kind, list):
        other = next(k for k in kind if k != "null")
        return st.none() | values(other)
    if isinstance(kind, dict):
        logical = kind.get("logicalType")
        if logical == "timestamp-millis":
            span = {"min_value": dt.datetime(1900, 1, 1), "max_value": dt.datetime(2200, 1, 1)}
            moments = st.datetimes(**span, timezones=st.sampled_from(ZONES))
            return st.integers(-(2**62), 2**62) | moments | st.datetimes(**span)  # naive: UTC
        if logical == "decimal":
            precision, scale = int(kind["precision"]), int(kind.get("scale", 0))
            limit = Decimal(10) ** (precision - scale) - 1
            return st.decimals(min_value=-limit, max_value=limit, places=scale, allow_nan=False)
        if kind["type"] == "record":
            return st.fixed_dictionaries({f["name"]: values(f["type"]) for f in kind["fields"]})
        if kind["type"] == "map":
            return st.dictionaries(TEXT, values(kind["values"]), max_size=5)
        if kind["type"] == "array":
            return st.lists(values(kind["items"]), max_size=4)
        return values(kind["type"])
    return {
        "string": TEXT,
        "long": st.integers(-(2**63), 2**63 - 1),
        "int": st.integers(-(2**31), 2**31 - 1),
        "boolean": st.booleans(),
        "bytes": st.binary(max_size=300),
        "null": st.none(),
    }[kind]


def _nullable_fields(schema: dict[str, Any]) -> list[str]:
    return [f["name"] for f in schema["fields"] if isinstance(f["type"], list) and "null" in f["type"]]


def _fastavro(parsed: Any, record: Any) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, parsed, record)
    return out.getvalue()


ANYTHING = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.decimals(allow_nan=False, allow_infinity=False, places=8)
    | TEXT
    | st.binary(max_size=10)
    | st.lists(st.integers(0, 3), max_size=2)
    | st.dictionaries(TEXT, TEXT, max_size=2)
)


@pytest.mark.parametrize(("name", "version"), SCHEMAS)
@SETTINGS
@given(data=st.data())
def test_writes_fastavro_bytes_and_refuses_what_it_refuses(
    name: str, version: int, data: st.DataObject
) -> None:
    schema = all_versions()[name][version]
    record = data.draw(values(schema.declared), label="record")
    nullable = _nullable_fields(schema.declared) or [""]
    for left_out in data.draw(st.lists(st.sampled_from(nullable), max_size=4), label="left out"):
        record.pop(left_out, None)  # a nullable field left out: written as its default
    if data.draw(st.booleans(), label="spoil a field"):
        field = data.draw(st.sampled_from([f["name"] for f in schema.declared["fields"]]), label="field")
        if data.draw(st.booleans(), label="drop it"):
            record.pop(field, None)
        else:
            record[field] = data.draw(ANYTHING, label="value")
    encode = compile_writer(schema.declared)
    try:
        expected = _fastavro(schema.parsed, record)
    except Exception:  # fastavro refuses with assorted types
        with pytest.raises((ValueError, TypeError)):
            encode(record)
        return
    try:
        written = encode(record)
    except ValueError:
        return  # stricter than fastavro is allowed (e.g. a string where it would take bytes)
    assert written == expected


@pytest.mark.parametrize("name", NEWEST)
@SETTINGS
@given(data=st.data())
def test_reads_fastavro_values(name: str, data: st.DataObject) -> None:
    codec = Codec(name, millis=True)
    record = data.draw(values(codec.schema.declared), label="record")
    payload = _fastavro(codec.schema.parsed, record)
    assert compile_reader(codec.schema.declared)(payload) == fastavro.schemaless_reader(
        io.BytesIO(payload), codec.schema.parsed_millis, None
    )
    decoded = codec.decode_version(payload, codec.schema)
    assert codec.decode_version(codec.encode(record), codec.schema) == decoded


def test_a_record_of_other_mappings_or_missing_fields_is_written_alike() -> None:
    """Plain dicts take the subscript path; anything else the general one: the same bytes."""
    schema = all_versions()["click_state"][1].declared
    state = {
        "click": None,
        "expires_at": 5,
        "decisions": [{"dedup_key": "k", "conversion_id": "c", "outcome": "conversion", "emitted": []}],
    }  # "pending" left out: its default
    encode = compile_writer(schema)
    expected = _fastavro(fastavro.parse_schema(schema), state)
    assert encode(state) == expected
    assert encode(type("M", (dict,), {})(state)) == expected
    assert encode({**state, "decisions": tuple(state["decisions"])}) == expected
    assert encode({**state, "decisions": iter(state["decisions"])}) == expected
    assert encode({**state, "not a field": 1}) == expected  # as many keys as fields, one missing


def test_a_schema_too_deep_for_python_is_left_to_fastavro() -> None:
    kind: Any = "long"
    for _ in range(25):  # beyond Python's 20 statically nested blocks
        kind = {"type": "array", "items": kind}
    schema = {"type": "record", "name": "R", "fields": [{"name": "f", "type": kind}]}
    with pytest.raises(NotImplementedError):
        compile_writer(schema)
    with pytest.raises(NotImplementedError):
        compile_reader(schema)


HOSTILE = "x'] = 1\nimport os; os._exit(3)\n#"


def test_field_names_are_literals_not_source() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": HOSTILE, "type": "string"},
            {"name": "a\\", "type": ["null", "long"], "default": None},
            {"name": '"""', "type": {"type": "map", "values": "string"}},
        ],
    }
    record = {HOSTILE: "v", "a\\": 7, '"""': {"k": "v"}}
    payload = compile_writer(schema)(record)
    assert payload == _fastavro(fastavro.parse_schema(schema), record)
    assert compile_reader(schema)(payload) == record
    for source in (writer_source(schema), reader_source(schema)):
        assert not any(line.lstrip().startswith("import") for line in source.lines)

"""The SQL endpoint's protocol pieces: statement checks on tokens, request parsing, compression."""

from __future__ import annotations

import base64

import pytest

from sinks import chhttp, sql_text
from sinks.chhttp import ClickHouseError

KNOWN = frozenset({"max_threads", "max_result_rows", "readonly"})


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("SELECT 1", None),
        ("SELECT 'KILL QUERY'; ", None),  # a trailing semicolon is one statement
        ("SELECT 1 /* ; KILL */", None),
        ("SELECT `INTO` , 'OUTFILE' FROM t", None),
        ("SELECT 1; SELECT 2", 62),
        ("  kill query where 1", 164),
        ("SELECT 1 INTO OUTFILE '/tmp/x' FORMAT CSV", 164),
        ("-- nothing\n", 62),
    ],
)
def test_statement_checks_read_tokens_not_text(sql: str, code: int | None) -> None:
    refusal = sql_text.check(sql)
    assert (refusal.code if refusal else None) == code


@pytest.mark.parametrize(
    ("sql", "fmt"),
    [
        ("SELECT 1 FORMAT JSONCompact", "JSONCompact"),
        ("SELECT 1 format TSV SETTINGS max_threads = 1", "TSV"),
        ("SELECT * FROM (SELECT 1 FORMAT JSON)", None),
        ("SELECT 'FORMAT CSV'", None),
        ("SELECT format('{}', 1)", None),
    ],
)
def test_output_format_is_the_top_level_clause(sql: str, fmt: str | None) -> None:
    assert sql_text.output_format(sql) == fmt


def test_query_joins_url_and_body_and_splits_parameters_from_settings() -> None:
    q = chhttp.parse_query(
        {"query": "SELECT {x:UInt8}", "param_x": "4", "max_threads": "2", "database": "d", "session_id": "s"},
        {},
        "+ 1",
        KNOWN,
    )
    assert (q.sql, q.fmt, q.database, q.parameters, q.settings) == (
        "SELECT {x:UInt8}\n+ 1",
        "TabSeparated",
        "d",
        {"x": "4"},
        {"max_threads": "2"},
    )
    assert chhttp.parse_query({"default_format": "CSV"}, {}, "SELECT 1 FORMAT JSON", KNOWN).fmt == "JSON"
    assert chhttp.parse_query({"default_format": "CSV"}, {}, "SELECT 1", KNOWN).fmt == "CSV"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"no_such_setting": "1"}, 115),
        ({"readonly": "0"}, 164),
        ({"max_threads": "1&readonly=0"}, 27),
    ],
)
def test_settings_the_endpoint_refuses(params: dict[str, str], code: int) -> None:
    with pytest.raises(ClickHouseError) as info:
        chhttp.parse_query(params, {}, "SELECT 1", KNOWN)
    assert info.value.code == code


def test_credentials_by_header_basic_or_parameters() -> None:
    basic = "Basic " + base64.b64encode(b"ann:pw:with:colons").decode()
    assert chhttp.credentials({"authorization": basic}, {}) == chhttp.Credentials("ann", "pw:with:colons")
    headers = {"x-clickhouse-user": "bob", "x-clickhouse-key": "k"}
    assert chhttp.credentials(headers, {}) == chhttp.Credentials("bob", "k")
    assert chhttp.credentials({}, {"user": "c", "password": "p"}) == chhttp.Credentials("c", "p")
    assert chhttp.credentials({}, {}) == chhttp.Credentials("default", "")


def test_status_follows_clickhouse() -> None:
    assert [chhttp.status_for(c) for c in (516, 164, 62, 60, 202, 241)] == [401, 403, 400, 404, 503, 500]


def test_engine_errors_keep_code_and_text_once_versioned() -> None:
    code, text = chhttp.engine_error("oops Code: 60. DB::Exception: Unknown table. (UNKNOWN_TABLE)", "1.2")
    assert (code, text) == (60, "Code: 60. DB::Exception: Unknown table. (UNKNOWN_TABLE) (version 1.2)\n")
    assert chhttp.engine_error("no code here", "1.2")[0] == 1001


@pytest.mark.parametrize("encoding", chhttp.ENCODINGS)
def test_http_encodings_round_trip(encoding: str) -> None:
    data = b"row\t1\n" * 1000
    assert chhttp.decode(chhttp.encode(data, encoding), encoding) == data
    assert chhttp.pick_encoding(f"br, {encoding};q=0.5", {}) == encoding
    assert chhttp.pick_encoding(encoding, {"enable_http_compression": "0"}) is None


def test_native_blocks_round_trip_and_check_their_checksums() -> None:
    data = bytes(range(256)) * 9000  # more than one 1 MiB block
    packed = chhttp.compress_native(data)
    assert packed[16] == 0x82 and chhttp.decompress_native(packed) == data
    corrupt = bytearray(packed)
    corrupt[30] ^= 0xFF
    with pytest.raises(ClickHouseError) as info:
        chhttp.decompress_native(bytes(corrupt))
    assert info.value.code == 40

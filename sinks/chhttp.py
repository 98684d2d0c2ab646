"""ClickHouse's HTTP interface, the part its clients use, as pure functions.

What a request means (query text, output format, database, `param_x` parameters, settings,
credentials) and how an answer looks (status by exception code, content type, compression)
follow ClickHouse's own HTTP handler, so clickhouse-connect, the JDBC driver and curl work
unchanged. Nothing here runs a query; `sinks/endpoint.py` does, on the engine.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import re
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import lz4.block
import lz4.frame
from clickhouse_cityhash.cityhash import CityHash128

from sinks import sql_text

try:  # Python 3.14 has it in the standard library; before, the backport clickhouse-connect needs
    from compression import zstd  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - depends on the interpreter
    from backports import zstd  # type: ignore[import-not-found,no-redef,unused-ignore]

DEFAULT_FORMAT = "TabSeparated"

# URL parameters that are the transport's, not settings (ClickHouse's HTTPHandler reserves these).
TRANSPORT_PARAMS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "user",
        "password",
        "quota_key",
        "query_id",
        "session_id",
        "session_timeout",
        "session_check",
        "close_session",
        "compress",
        "decompress",
        "buffer_size",
        "wait_end_of_query",
        "stacktrace",
        "role",
        "client_protocol_version",
        "enable_http_compression",
        "http_zlib_compression_level",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "cancel_http_readonly_queries_on_client_close",
        "http_wait_end_of_query",
        "http_response_buffer_size",
    }
)

# ClickHouse's exceptionCodeToHTTPStatus, for the codes a read-only endpoint can meet.
_STATUS_BY_CODE: dict[int, int] = {
    **dict.fromkeys((192, 193, 194, 516), 401),  # unknown user, wrong password, required, auth failed
    **dict.fromkeys((164, 497, 446), 403),  # READONLY, ACCESS_DENIED, FUNCTION_NOT_ALLOWED
    **dict.fromkeys(
        (
            6,  # CANNOT_PARSE_TEXT
            25,  # CANNOT_PARSE_ESCAPE_SEQUENCE
            26,  # CANNOT_PARSE_QUOTED_STRING
            27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
            32,  # ATTEMPT_TO_READ_AFTER_EOF
            38,  # CANNOT_PARSE_DATE
            41,  # CANNOT_PARSE_DATETIME
            42,  # NUMBER_OF_ARGUMENTS_DOESNT_MATCH
            43,  # ILLEGAL_TYPE_OF_ARGUMENT
            44,  # ILLEGAL_COLUMN
            53,  # TYPE_MISMATCH
            62,  # SYNTAX_ERROR
            69,  # ARGUMENT_OUT_OF_BOUND
            70,  # CANNOT_CONVERT_TYPE
            72,  # CANNOT_PARSE_NUMBER
            73,  # UNKNOWN_FORMAT
            115,  # UNKNOWN_SETTING
            184,  # ILLEGAL_AGGREGATION
            215,  # NOT_AN_AGGREGATE
            456,  # UNKNOWN_QUERY_PARAMETER
            457,  # BAD_QUERY_PARAMETER
        ),
        400,
    ),
    **dict.fromkeys((46, 47, 60, 81, 50, 56), 404),  # unknown function/identifier/table/db/type/storage
    202: 503,  # TOO_MANY_SIMULTANEOUS_QUERIES
    # QUOTA_EXCEEDED: ClickHouse's server answers it 500; 429 here (the endpoint's rate limit), a
    # status clients retry after a pause (clickhouse-connect: 429, 503, 504), as they should.
    201: 429,
    48: 501,  # NOT_IMPLEMENTED
    1: 501,  # UNSUPPORTED_METHOD
}

_CONTENT_TYPES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(JSON|PrettyJSON|NDJSON)", re.I), "application/json; charset=UTF-8"),
    (re.compile(r"^(TabSeparated|TSV)", re.I), "text/tab-separated-values; charset=UTF-8"),
    (re.compile(r"^CSV", re.I), "text/csv; charset=UTF-8; header=absent"),
    (
        re.compile(r"^(Pretty|Vertical|Values|Markdown|XML|Template|CustomSeparated|LineAsString)", re.I),
        "text/plain; charset=UTF-8",
    ),
)

_CODE = re.compile(r"Code: (\d+)\.")
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Setting values reach the engine in its connection string: nothing that string could split on.
_SETTING_VALUE = re.compile(r"^[^&?#%\x00-\x1f]*$")

ENCODINGS = ("zstd", "lz4", "gzip", "deflate")


class ClickHouseError(Exception):
    """An exception as ClickHouse reports it: code, name, message (and so, an HTTP status)."""

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.name = name
        self.message = message

    @classmethod
    def of(cls, refusal: sql_text.Refusal) -> ClickHouseError:
        return cls(refusal.code, refusal.name, refusal.message)

    def body(self, version: str) -> str:
        return f"Code: {self.code}. DB::Exception: {self.message}. ({self.name}) (version {version})\n"

    @property
    def status(self) -> int:
        return status_for(self.code)


def status_for(code: int) -> int:
    return _STATUS_BY_CODE.get(code, 500)


def engine_error(message: str, version: str) -> tuple[int, str]:
    """(code, body) of an error text the engine raised: its code, its words, one version suffix."""
    text = message.strip()
    match = _CODE.search(text)
    code = int(match.group(1)) if match else 1001  # STD_EXCEPTION
    start = match.start() if match else 0
    text = text[start:] if match else f"Code: 1001. DB::Exception: {text}. (STD_EXCEPTION)"
    if "(version " not in text:
        text += f" (version {version})"
    return code, text + "\n"


def content_type(fmt: str) -> str:
    for pattern, kind in _CONTENT_TYPES:
        if pattern.match(fmt):
            return kind
    return "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Credentials:
    user: str
    password: str


def credentials(headers: Mapping[str, str], params: Mapping[str, str]) -> Credentials:
    """Who the client says it is: X-ClickHouse-User/Key, Basic auth, or user/password parameters.

    No credentials at all is ClickHouse's `default` user with an empty password.
    """
    if "x-clickhouse-user" in headers or "x-clickhouse-key" in headers:
        return Credentials(headers.get("x-clickhouse-user", "default"), headers.get("x-clickhouse-key", ""))
    auth = headers.get("authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            user, _, password = base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ClickHouseError(516, "AUTHENTICATION_FAILED", "Malformed Basic authorization") from None
        return Credentials(user or "default", password)
    return Credentials(params.get("user", "default"), params.get("password", ""))


@dataclass(frozen=True, slots=True)
class QueryRequest:
    """One query as the engine should run it."""

    sql: str
    fmt: str
    database: str | None
    parameters: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    query_id: str | None = None


def parse_query(
    params: Mapping[str, str], headers: Mapping[str, str], body: str, known_settings: frozenset[str]
) -> QueryRequest:
    """The query of one request: URL `query` then the body, as ClickHouse joins them.

    Raises ClickHouseError for what ClickHouse's server would refuse before running anything.
    """
    parts = [p for p in (params.get("query", ""), body) if p.strip()]
    sql = "\n".join(parts)
    refusal = sql_text.check(sql)
    if refusal is not None:
        raise ClickHouseError.of(refusal)
    fmt = (
        sql_text.output_format(sql)
        or headers.get("x-clickhouse-format")
        or params.get("default_format")
        or DEFAULT_FORMAT
    )
    settings: dict[str, str] = {}
    parameters: dict[str, str] = {}
    for key, value in params.items():
        if key.startswith("param_"):
            parameters[key[6:]] = value
        elif key in TRANSPORT_PARAMS:
            continue
        else:
            settings[key] = _setting(key, value, known_settings)
    database = params.get("database") or headers.get("x-clickhouse-database") or None
    return QueryRequest(sql, fmt, database, parameters, settings, params.get("query_id"))


def _setting(name: str, value: str, known: frozenset[str]) -> str:
    if not _SETTING_NAME.match(name) or name not in known:
        raise ClickHouseError(115, "UNKNOWN_SETTING", f"Unknown setting '{name}'")
    if name == "readonly" and value.strip() not in {"1", "2"}:
        raise ClickHouseError(164, "READONLY", "Cannot modify 'readonly' setting in readonly mode")
    if not _SETTING_VALUE.match(value):
        raise ClickHouseError(
            27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED", f"Cannot parse the value of setting '{name}'"
        )
    return value


def pick_encoding(accept_encoding: str, params: Mapping[str, str]) -> str | None:
    """The response's Content-Encoding: the client's first listed one we have, unless it opted out."""
    if params.get("enable_http_compression", "1") in {"0", "false"}:
        return None
    for item in accept_encoding.split(","):
        name = item.split(";")[0].strip().lower()
        if name in ENCODINGS:
            return name
    return None


def encode(data: bytes, encoding: str | None) -> bytes:
    if encoding is None:
        return data
    if encoding == "gzip":
        return gzip.compress(data, compresslevel=3)
    if encoding == "deflate":
        return zlib.compress(data, 3)
    if encoding == "lz4":
        return bytes(lz4.frame.compress(data))
    if encoding == "zstd":
        return bytes(zstd.compress(data))
    raise ValueError(encoding)


def decode(data: bytes, encoding: str) -> bytes:
    """A request body the client compressed (Content-Encoding)."""
    name = encoding.strip().lower()
    try:
        if name in {"", "identity"}:
            return data
        if name == "gzip":
            return gzip.decompress(data)
        if name == "deflate":
            return zlib.decompress(data)
        if name == "lz4":
            return bytes(lz4.frame.decompress(data))
        if name == "zstd":
            return bytes(zstd.decompress(data))
    except Exception as exc:
        raise ClickHouseError(
            271, "CANNOT_DECOMPRESS", f"Cannot decompress the request body ({name}): {exc}"
        ) from None
    raise ClickHouseError(48, "NOT_IMPLEMENTED", f"Unknown Content-Encoding of the request body: {name}")


# ClickHouse's own compressed blocks (`compress=1` / `decompress=1`, what the JDBC driver asks for):
# CityHash128 (v1.0.2) of the rest, method byte, sizes with the 9-byte header, then the LZ4 block.
_LZ4_METHOD = 0x82
_NONE_METHOD = 0x02
_BLOCK_BYTES = 1024 * 1024
_MAX_U64 = (1 << 64) - 1


def _checksum(block: bytes) -> bytes:
    value = CityHash128(block)
    return struct.pack("<QQ", (value >> 64) & _MAX_U64, value & _MAX_U64)


def compress_native(data: bytes) -> bytes:
    """`data` as ClickHouse's compressed blocks of at most 1 MiB each (LZ4)."""
    out = bytearray()
    for start in range(0, max(len(data), 1), _BLOCK_BYTES):
        chunk = data[start : start + _BLOCK_BYTES]
        packed = lz4.block.compress(chunk, store_size=False)
        block = struct.pack("<BII", _LZ4_METHOD, len(packed) + 9, len(chunk)) + packed
        out += _checksum(block) + block
    return bytes(out)


def decompress_native(data: bytes) -> bytes:
    """A request body in ClickHouse's compressed blocks (`decompress=1`), checksums checked."""
    out = bytearray()
    pos = 0
    while pos < len(data):
        if len(data) - pos < 25:
            raise ClickHouseError(271, "CANNOT_DECOMPRESS", "Truncated compressed block")
        method, size, plain = struct.unpack_from("<BII", data, pos + 16)
        block = data[pos + 16 : pos + 16 + size]
        if len(block) != size or _checksum(block) != data[pos : pos + 16]:
            raise ClickHouseError(40, "CHECKSUM_DOESNT_MATCH", "Checksum doesn't match: corrupted data")
        payload = block[9:]
        if method == _LZ4_METHOD:
            out += lz4.block.decompress(payload, uncompressed_size=plain)
        elif method == _NONE_METHOD:
            out += payload
        else:
            raise ClickHouseError(271, "CANNOT_DECOMPRESS", f"Unknown compression method: {method:#x}")
        pos += 16 + size
    return bytes(out)

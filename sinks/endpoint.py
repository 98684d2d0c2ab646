"""ClickHouse's HTTP interface for the embedded engine, served by the process that owns it.

The embedded engine (chDB) admits one process per data dir. While `postbacks up` runs the
sink owns it, so analysts' tools -- clickhouse-connect, the JDBC driver (DBeaver), curl --
and `postbacks report` / `postbacks sql` reach it here, as they would a ClickHouse server:
`GET|POST /?query=...`, `/ping`, `/replicas_status` (sinks/chhttp.py has the protocol).

Read-only by the engine's own rule: every request gets a fresh engine session with its URL
settings and then `readonly=1` (no writes, DDL, SYSTEM, settings changes, file or URL table
functions); what a local engine would still let through is refused first (sinks/sql_text.py).
Loopback by default (CLICKHOUSE_HTTP_HOST), port 8123 when free (CLICKHOUSE_HTTP_PORT),
credentials from the sources file's `[sql]` table or made up at start (sinks/sql_access.py).
The URL and credentials go to `clickhouse.endpoint.json` (0600) next to the engine's data.
Queries run one at a time on their own thread, beside the writers' thread; a few more may
wait, beyond that ClickHouse's TOO_MANY_SIMULTANEOUS_QUERIES. Each client address and each user
has a token bucket (CLICKHOUSE_HTTP_RATE/_BURST): the address's is taken before the password is
checked (a guesser is slowed), the user's after (a wrong password cannot use up the analyst's);
over either, ClickHouse's QUOTA_EXCEEDED as 429, which clients retry. Query texts are never logged.
With a server DSN nothing of this runs: every process connects to ClickHouse itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import decimal
import json
import logging
import math
import os
import socket
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chdb
from aiohttp import web

from postbacks.ratelimit import KeyedLimiter
from postbacks.settings import Settings
from sinks import chhttp, overview
from sinks.chhttp import ClickHouseError, QueryRequest
from sinks.sql_access import Access

log = logging.getLogger(__name__)

MAX_WAITING = 16
MAX_QUERY_BYTES = 1024 * 1024
DEFAULT_MAX_EXECUTION_TIME_S = 300
_OK = "Ok.\n"


def endpoint_file(data_dir: Path) -> Path:
    return data_dir.resolve() / "clickhouse.endpoint.json"


def engine_path(dsn: str) -> str:
    """The engine's data dir as the sink's client opened it (chDB compares paths literally)."""
    return os.path.realpath(dsn.removeprefix("chdb://"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def _connect(connection_string: str) -> Any:
    """A new session on the process's one engine (chDB: any number of sessions, one data dir)."""
    return chdb.connect(connection_string)  # type: ignore[no-untyped-call]


def _quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


@dataclass(frozen=True, slots=True)
class Answer:
    body: bytes
    rows_read: int
    bytes_read: int
    elapsed_s: float


class Engine:
    """Fresh read-only engine sessions for queries, on one thread of their own."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="sql-http")
        self.version, self.timezone, self.known_settings = self._executor.submit(self._describe).result()

    def _describe(self) -> tuple[str, str, frozenset[str]]:
        conn = _connect(f"{self.path}?readonly=1")
        try:
            version, timezone = bytes(conn.query("SELECT version(), timezone()", "TSV").bytes()).split(b"\t")
            names = bytes(conn.query("SELECT name FROM system.settings", "TSV").bytes()).split()
        finally:
            conn.close()
        return version.decode(), timezone.decode().strip(), frozenset(n.decode() for n in names)

    def connection_string(self, settings: dict[str, str]) -> str:
        """URL settings first, a time limit unless given, and read-only last."""
        merged = {"max_execution_time": str(DEFAULT_MAX_EXECUTION_TIME_S), **settings, "readonly": "1"}
        return f"{self.path}?" + "&".join(f"{k}={v}" for k, v in merged.items())

    def _run(self, request: QueryRequest) -> Answer:
        try:
            conn = _connect(self.connection_string(request.settings))
        except Exception as exc:
            code, text = chhttp.engine_error(str(exc), self.version)
            raise EngineError(code, text) from None
        try:
            if request.database:
                conn.query(f"USE {_quote_identifier(request.database)}", "TSV")
            result = conn.query(request.sql, request.fmt, params=request.parameters)
            return Answer(
                bytes(result.bytes() or b""), result.rows_read(), result.bytes_read(), result.elapsed()
            )
        except Exception as exc:
            code, text = chhttp.engine_error(str(exc), self.version)
            raise EngineError(code, text) from None
        finally:
            conn.close()

    async def run(self, request: QueryRequest) -> Answer:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, request)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class EngineError(Exception):
    """The engine refused or failed a query: ClickHouse's code and its text, as they are."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class RateLimited(ClickHouseError):
    """A user or an address over its token bucket: ClickHouse's QUOTA_EXCEEDED, with the wait."""

    def __init__(self, kind: str, key: str, rate: float, burst: int, wait_s: float) -> None:
        who = f"user `{key}`" if kind == "user" else f"address {key}"
        super().__init__(
            201,
            "QUOTA_EXCEEDED",
            f"Quota for {who} has been exceeded: more than {rate:g} queries a second "
            f"(or {burst} at once). Retry in {wait_s:.2f} s",
        )
        self.wait_s = wait_s


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on `port`, or on any free port when that one is taken (0: any)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for candidate in dict.fromkeys((port, 0)):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError:
            sock.close()
            if candidate == 0:
                raise
            log.warning("clickhouse http port taken; using a free one", extra={"port": port})
            continue
        sock.listen(128)
        sock.setblocking(False)
        return sock
    raise AssertionError("unreachable")


class QueryEndpoint:
    """The HTTP server; `start()` binds, writes the endpoint file, `stop()` removes it."""

    def __init__(
        self,
        dsn: str,
        data_dir: Path,
        access: Access,
        host: str = "127.0.0.1",
        port: int = 8123,
        metrics_urls: dict[str, str] | None = None,
        rate_limit: tuple[float, int] | None = None,
    ):
        self.metrics_urls = metrics_urls or {}  # service -> its /metrics, for the overview's health
        self.engine = Engine(engine_path(dsn))
        self.path = endpoint_file(data_dir)
        self.access = access
        self.host, self.port = host, port
        self.display_name = socket.gethostname()
        self._waiting = 0
        defaults = Settings()
        self.rate, self.burst = rate_limit or (defaults.clickhouse_http_rate, defaults.clickhouse_http_burst)
        self._per_address = KeyedLimiter(self.rate, self.burst)
        self._per_user = KeyedLimiter(self.rate, self.burst)
        self._lock = threading.Lock()
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_QUERY_BYTES)
        app.router.add_get("/ping", self._ok)
        app.router.add_get("/replicas_status", self._ok)
        app.router.add_route("GET", "/", self._root)
        app.router.add_route("POST", "/", self._root)
        app.router.add_get("/overview", overview.redirect)
        app.router.add_get("/overview/health", self._health)
        app.router.add_get("/overview/", overview.page)
        app.router.add_get("/overview/{name}", overview.page)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        sock = bind(self.host, self.port)
        site = web.SockSite(self._runner, sock)
        await site.start()
        self.port = sock.getsockname()[1]
        url = f"http://{self.host if ':' not in self.host else f'[{self.host}]'}:{self.port}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "url": url,
                    "host": self.host,
                    "port": self.port,
                    "user": self.access.user,
                    "password": self.access.password,
                    "generated_password": self.access.generated,
                }
            )
        )
        tmp.chmod(0o600)
        tmp.replace(self.path)
        log.info("clickhouse http interface ready", extra={"url": url, "user": self.access.user})

    async def stop(self) -> None:
        self.path.unlink(missing_ok=True)
        if self._runner is not None:
            await self._runner.cleanup()
        self.engine.close()

    def _headers(self) -> dict[str, str]:
        return {"X-ClickHouse-Server-Display-Name": self.display_name}

    async def _ok(self, request: web.Request) -> web.Response:
        return web.Response(text=_OK, headers=self._headers())

    def _error(self, code: int, body: str, error: ClickHouseError | None = None) -> web.Response:
        headers = {**self._headers(), "X-ClickHouse-Exception-Code": str(code)}
        if isinstance(error, RateLimited):
            headers["Retry-After"] = str(max(1, math.ceil(error.wait_s)))
        return web.Response(
            status=chhttp.status_for(code), text=body, content_type="text/plain", headers=headers
        )

    def _take(self, limiter: KeyedLimiter, kind: str, key: str) -> None:
        """Count a request against `key`'s bucket; RateLimited when it is empty."""
        wait = limiter.take(key, time.monotonic())
        if wait > 0:
            log.warning("clickhouse http rate limited", extra={kind: key[:64]})
            raise RateLimited(kind, key, self.rate, self.burst, wait)

    async def _health(self, request: web.Request) -> web.Response:
        """The services' health for the overview page: the same credentials as a query."""
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            self._take(self._per_address, "address", request.remote or "")
            who = chhttp.credentials(headers, dict(request.query))
            if not self.access.allows(who.user, who.password):
                raise ClickHouseError(516, "AUTHENTICATION_FAILED", f"{who.user}: Authentication failed")
            self._take(self._per_user, "user", who.user)
        except ClickHouseError as exc:
            return self._error(exc.code, exc.body(self.engine.version), exc)
        return web.json_response(
            await overview.health(self.metrics_urls), headers={"Cache-Control": "no-store"}
        )

    async def _root(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            error = ClickHouseError(393, "QUERY_IS_TOO_LARGE", f"Query is too large (> {MAX_QUERY_BYTES})")
            return self._error(error.code, error.body(self.engine.version))
        if request.method == "GET" and "query" not in params and not raw:
            return web.Response(text=_OK, headers=self._headers())
        try:
            self._take(self._per_address, "address", request.remote or "")
            who = chhttp.credentials(headers, params)
            if not self.access.allows(who.user, who.password):
                raise ClickHouseError(
                    516,
                    "AUTHENTICATION_FAILED",
                    f"{who.user}: Authentication failed: password is incorrect, "
                    "or there is no user with such name",
                )
            self._take(self._per_user, "user", who.user)
            raw = chhttp.decode(raw, headers.get("content-encoding", ""))
            if params.get("decompress") == "1":
                raw = chhttp.decompress_native(raw)
            query = chhttp.parse_query(
                params, headers, raw.decode("utf-8", "replace"), self.engine.known_settings
            )
        except ClickHouseError as exc:
            if exc.code == 516:
                log.warning("clickhouse http authentication failed", extra={"user": who.user[:64]})
            return self._error(exc.code, exc.body(self.engine.version), exc)
        return await self._execute(query, headers, native=params.get("compress") == "1")

    async def _execute(self, query: QueryRequest, headers: dict[str, str], native: bool) -> web.Response:
        with self._lock:
            if self._waiting >= MAX_WAITING:
                error = ClickHouseError(
                    202,
                    "TOO_MANY_SIMULTANEOUS_QUERIES",
                    f"Too many simultaneous queries. Maximum: {MAX_WAITING}",
                )
                return self._error(error.code, error.body(self.engine.version))
            self._waiting += 1
        try:
            answer = await self.engine.run(query)
        except EngineError as exc:
            log.info("clickhouse http query refused", extra={"code": exc.code})
            return self._error(exc.code, exc.text)
        finally:
            with self._lock:
                self._waiting -= 1
        encoding = chhttp.pick_encoding(headers.get("accept-encoding", ""), {})
        body = chhttp.compress_native(answer.body) if native else answer.body
        summary = {
            "read_rows": str(answer.rows_read),
            "read_bytes": str(answer.bytes_read),
            "written_rows": "0",
            "written_bytes": "0",
            "total_rows_to_read": str(answer.rows_read),
            "result_bytes": str(len(answer.body)),
            "elapsed_ns": str(int(answer.elapsed_s * 1e9)),
        }
        response_headers = {
            **self._headers(),
            "Content-Type": chhttp.content_type(query.fmt),
            "X-ClickHouse-Format": query.fmt,
            "X-ClickHouse-Query-Id": query.query_id or str(uuid.uuid4()),
            "X-ClickHouse-Timezone": self.engine.timezone,
            "X-ClickHouse-Summary": json.dumps(summary, separators=(",", ":")),
        }
        if encoding is not None:
            response_headers["Content-Encoding"] = encoding
        return web.Response(body=chhttp.encode(body, encoding), headers=response_headers)


def read_endpoint(data_dir: Path) -> dict[str, Any] | None:
    """The running stack's endpoint: url, host, port, user, password; None when none runs."""
    path = endpoint_file(data_dir)
    try:
        info: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info


_clients: dict[tuple[str, str, str], Any] = {}


def _client(info: dict[str, Any], timeout_s: float) -> Any:
    import clickhouse_connect

    key = (info["url"], info["user"], info["password"])
    client = _clients.get(key)
    if client is None:
        parsed = urllib.parse.urlsplit(info["url"])
        client = clickhouse_connect.get_client(
            host=parsed.hostname,
            port=parsed.port,
            username=info["user"],
            password=info["password"],
            send_receive_timeout=timeout_s,
            autogenerate_session_id=False,
        )
        _clients[key] = client
    return client


def remote_query(
    data_dir: Path, sql: str, timeout_s: float = 60.0
) -> tuple[list[str], list[list[Any]]] | None:
    """Run SQL through a running stack's endpoint with clickhouse-connect, as any client would.

    None when no stack answers (no endpoint file, or a stale one); the engine's refusals raise.
    """
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    info = read_endpoint(data_dir)
    if info is None:
        return None
    try:
        result = _client(info, timeout_s).query(sql)
    except OperationalError:
        _clients.pop((info["url"], info["user"], info["password"]), None)
        return None  # stale file: the owner is gone
    except DatabaseError as exc:
        raise RuntimeError(str(exc)) from exc
    rows = [[_jsonable(v) for v in row] for row in result.result_rows]
    return list(result.column_names), rows

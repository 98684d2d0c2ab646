"""One way to reach ClickHouse, whichever engine: `chdb:///dir` (in-process) or `http(s)://...`.

The embedded engine allows one process per data dir, and its client has no async
API: callers run it on one dedicated thread (`ClickHouse.run`) so the event loop
never blocks and the engine never sees two calls at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from sinks import metrics

T = TypeVar("T")


def connect(dsn: str) -> Client:
    return clickhouse_connect.get_client(dsn=dsn)


def is_embedded(dsn: str) -> bool:
    return dsn.startswith("chdb://")


def insert_values(
    client: Client, table: str, values: Sequence[Sequence[Any]], columns: Sequence[str], token: str
) -> None:
    """Insert column-oriented data (`values[i]` holds every row's value of `columns[i]`) once per token."""
    client.insert(
        table,
        values,
        column_names=list(columns),
        column_oriented=True,
        settings={"insert_deduplication_token": token},
    )


def insert_avro(client: Client, table: str, container: bytes, columns: Sequence[str], token: str) -> None:
    """Insert an Avro container file (sinks/avro_block.py), decoded by ClickHouse, once per token.

    A null in a non-Nullable column stores the column's default ('' for our strings), as the
    Python path does; set here rather than left to the server's profile.
    """
    client.raw_insert(
        table,
        list(columns),
        container,
        settings={"insert_deduplication_token": token, "input_format_null_as_default": 1},
        fmt="Avro",
    )


class ClickHouse:
    """A client plus the single thread every call to it runs on."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self.client: Client = self._executor.submit(connect, dsn).result()

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self._timed("other", fn, *args, **kwargs)

    async def _timed(self, call: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run on the engine's thread, observing how long the call waited for it and how long it ran."""
        submitted = time.perf_counter()
        began = submitted

        def timed() -> T:
            nonlocal began
            began = time.perf_counter()
            return fn(*args, **kwargs)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, timed)
        finally:
            metrics.ENGINE_SECONDS.labels(call, "wait").observe(began - submitted)
            metrics.ENGINE_SECONDS.labels(call, "run").observe(time.perf_counter() - began)

    async def insert(
        self, table: str, values: Sequence[Sequence[Any]], columns: Sequence[str], token: str
    ) -> None:
        await self._timed(table, insert_values, self.client, table, values, columns, token)

    async def insert_avro(self, table: str, container: bytes, columns: Sequence[str], token: str) -> None:
        await self._timed(table, insert_avro, self.client, table, container, columns, token)

    async def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        result = await self._timed("query", self.client.query, sql, parameters=parameters)
        return [tuple(row) for row in result.result_rows]

    def close(self) -> None:
        self._executor.submit(self.client.close).result()
        self._executor.shutdown(wait=True)

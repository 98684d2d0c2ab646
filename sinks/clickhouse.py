"""One way to reach ClickHouse, whichever engine: `chdb:///dir` (in-process) or `http(s)://...`.

The embedded engine allows one process per data dir, and its client has no async
API: callers run it on one dedicated thread (`ClickHouse.run`) so the event loop
never blocks and the engine never sees two calls at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import clickhouse_connect
from clickhouse_connect.driver.client import Client

T = TypeVar("T")


def connect(dsn: str) -> Client:
    return clickhouse_connect.get_client(dsn=dsn)


def is_embedded(dsn: str) -> bool:
    return dsn.startswith("chdb://")


class ClickHouse:
    """A client plus the single thread every call to it runs on."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self.client: Client = self._executor.submit(connect, dsn).result()

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def insert(
        self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str], token: str
    ) -> None:
        await self.run(
            self.client.insert,
            table,
            rows,
            column_names=list(columns),
            settings={"insert_deduplication_token": token},
        )

    async def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        result = await self.run(self.client.query, sql, parameters=parameters)
        return [tuple(row) for row in result.result_rows]

    def close(self) -> None:
        self._executor.submit(self.client.close).result()
        self._executor.shutdown(wait=True)

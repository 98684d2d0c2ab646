"""Read-only SQL over loopback for the process that owns the embedded engine.

The embedded engine (chDB) admits one process per data dir. While `postbacks up` runs,
the sink process owns it, and `postbacks report` / `postbacks sql` reach it here:
`POST /query` with the SQL as body and the token from `endpoint.json` (mode 0600,
written next to the engine's data) in `X-Token`. Loopback only. With a server DSN
nothing of this runs: every process connects to ClickHouse itself.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hmac
import json
import logging
import secrets
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp import web

from sinks.clickhouse import ClickHouse

log = logging.getLogger(__name__)

_READ_ONLY = {"readonly": 1}


def endpoint_file(data_dir: Path) -> Path:
    return data_dir.resolve() / "clickhouse.endpoint.json"


def _jsonable(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


class QueryEndpoint:
    def __init__(self, clickhouse: ClickHouse, data_dir: Path) -> None:
        self.clickhouse = clickhouse
        self.path = endpoint_file(data_dir)
        self.token = secrets.token_urlsafe(24)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post("/query", self._query)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"url": f"http://127.0.0.1:{port}/query", "token": self.token}))
        self.path.chmod(0o600)
        log.info("query endpoint ready", extra={"port": port})

    async def stop(self) -> None:
        self.path.unlink(missing_ok=True)
        if self._runner is not None:
            await self._runner.cleanup()

    async def _query(self, request: web.Request) -> web.Response:
        if not hmac.compare_digest(request.headers.get("x-token", ""), self.token):
            return web.json_response({"error": "forbidden"}, status=403)
        sql = await request.text()
        try:
            result = await self.clickhouse.run(self.clickhouse.client.query, sql, settings=_READ_ONLY)
        except Exception as exc:
            return web.json_response({"error": str(exc)[:2000]}, status=400)
        rows = [[_jsonable(v) for v in row] for row in result.result_rows]
        return web.json_response({"columns": list(result.column_names), "rows": rows})


def remote_query(
    data_dir: Path, sql: str, timeout_s: float = 60.0
) -> tuple[list[str], list[list[Any]]] | None:
    """Run SQL through a running stack's endpoint; None when no stack answers."""
    path = endpoint_file(data_dir)
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    request = urllib.request.Request(
        info["url"], data=sql.encode(), headers={"x-token": info["token"]}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(json.loads(exc.read()).get("error", str(exc))) from exc
    except OSError:
        return None  # stale file: the owner is gone
    return body["columns"], body["rows"]

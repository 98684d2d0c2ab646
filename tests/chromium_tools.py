"""Headless Chromium for the tests: Debian's `chromium` package, installed when missing, driven over
its DevTools protocol (a websocket; aiohttp speaks it).

As with Prometheus (tests/prometheus_tools.py): nothing is skipped. Where Chromium is missing and the
tests run as root on Debian or Ubuntu (CI containers) it is installed with apt-get; anywhere else the
test fails and says how to install it. Every console error, uncaught exception and failed load the
browser logs is kept in `Page.errors`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.debian_packages import ensure

PACKAGE = "chromium"


def ensure_chromium() -> str:
    """The chromium binary, installing Debian's package if needed and possible."""
    return ensure(PACKAGE, lambda: shutil.which("chromium") or shutil.which("chromium-browser"))


class Page:
    """One browser tab over the DevTools protocol: commands, and the errors it reported."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.errors: list[str] = []
        self._next = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            if "id" in data:
                future = self._waiting.pop(data["id"])
                if "error" in data:
                    future.set_exception(RuntimeError(str(data["error"])))
                else:
                    future.set_result(data.get("result", {}))
                continue
            method, params = data.get("method"), data.get("params", {})
            if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                self.errors.append("console: " + " ".join(str(a.get("value", a)) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                self.errors.append("exception: " + json.dumps(params["exceptionDetails"])[:500])
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                entry = params["entry"]
                self.errors.append(f"log: {entry.get('text')} {entry.get('url', '')}")

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[self._next] = future
        await self.ws.send_str(json.dumps({"id": self._next, "method": method, "params": params}))
        return await asyncio.wait_for(future, 60)

    async def evaluate(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(str(result["exceptionDetails"]))
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = await self.evaluate(expression)
            if value or time.monotonic() > deadline:
                return value
            await asyncio.sleep(0.25)

    async def screenshot(self) -> bytes:
        """The viewport as PNG bytes."""
        shot = await self.call("Page.captureScreenshot", format="png")
        return base64.b64decode(shot["data"])


def start_chromium(profile: str, width: int, height: int) -> tuple[subprocess.Popen[bytes], int]:
    """Headless Chromium on a DevTools port of its choosing (read from its profile dir)."""
    process = subprocess.Popen(
        [
            ensure_chromium(),
            "--headless=new",
            "--no-sandbox",  # tests run as root in containers
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-crash-reporter",  # no crashpad handler outliving the browser
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its helpers (renderer, network, ...) in one group: stopped together
    )
    port_file = Path(profile) / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while not port_file.exists() or not port_file.read_text().strip():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("chromium did not open its DevTools port")
        time.sleep(0.1)
    return process, int(port_file.read_text().split()[0])


@asynccontextmanager
async def chromium(width: int = 1440, height: int = 900) -> AsyncIterator[Page]:
    """Headless Chromium with one tab of `width`x`height` (a laptop screen), stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        process, port = start_chromium(profile, width, height)
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                    targets = await response.json()
                url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
                async with session.ws_connect(url, max_msg_size=0) as ws:
                    page = Page(ws)
                    for domain in ("Runtime", "Log", "Page"):
                        await page.call(f"{domain}.enable")
                    await page.call(
                        "Emulation.setDeviceMetricsOverride",
                        width=width,
                        height=height,
                        deviceScaleFactor=1,
                        mobile=False,
                    )
                    yield page
        finally:
            stop_chromium(process)


def stop_chromium(process: subprocess.Popen[bytes]) -> None:
    """Stop the browser and every helper process it started, before its profile dir is removed.

    The browser's own exit is not enough: a helper still writing into the profile made the
    directory's removal fail ("Directory not empty: 'Default'", seen in test_overview).
    """
    group = process.pid  # its own session: the group id is its pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    deadline = time.monotonic() + 15
    for _ in range(400):  # 20 s at most: killed helpers nobody reaps stay in the group as zombies
        try:
            os.killpg(group, signal.SIGKILL if time.monotonic() > deadline else 0)
        except ProcessLookupError:
            return  # no process of the group is left
        time.sleep(0.05)

"""The live overview page: static HTML+JS served beside the SQL endpoint, plus the pipeline's health.

The page holds no data of its own. Its script queries this same endpoint's ClickHouse interface
with JSON formats (the numbers `postbacks report` reads, from the same tables), and asks
`/overview/health` for what ClickHouse does not know: whether each service answers and its
consumer lag, read from the services' own Prometheus `/metrics` (the lag there comes from Kafka).
So there is no second store and nothing to keep in step. The health answer needs the endpoint's
credentials like any query.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Mapping
from importlib import resources
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

ASSETS = {
    "index.html": "text/html",
    "overview.js": "text/javascript",
    "overview.css": "text/css",
}
SCRAPE_TIMEOUT_S = 2.0


def asset(name: str) -> bytes:
    return resources.files("sinks").joinpath("overview", name).read_bytes()


def summarize(scrapes: Mapping[str, str | None]) -> dict[str, Any]:
    """Health from each service's metrics text (None: it did not answer). Pure, for the tests.

    Lag is summed per consumer group over its partitions, as each service reports its own groups;
    `lag_age_s` is the oldest of those readings (they are refreshed from Kafka every few seconds).
    """
    services = []
    lag: dict[str, int] = defaultdict(int)
    ages: list[float] = []
    gauges: dict[str, float] = defaultdict(float)
    wanted = {
        "postbacks_outbound_waiting_deliveries": "outbound_waiting",
        "postbacks_outbound_paused_publishers": "paused_publishers",
        "postbacks_stream_held_postbacks": "held_postbacks",
    }
    for name, text in scrapes.items():
        services.append({"name": name, "up": text is not None})
        if text is None:
            continue
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "postbacks_consumer_lag_records":
                    lag[sample.labels["group"]] += int(sample.value)
                elif sample.name == "postbacks_consumer_lag_age_seconds" and not math.isnan(sample.value):
                    ages.append(sample.value)
                elif sample.name in wanted:
                    gauges[wanted[sample.name]] += sample.value
    return {
        "services": services,
        "lag": [{"group": group, "records": records} for group, records in sorted(lag.items())],
        "lag_age_s": round(max(ages), 1) if ages else None,
        **{key: int(gauges[key]) if key in gauges else None for key in wanted.values()},
    }


async def _scrape(session: aiohttp.ClientSession, url: str) -> str | None:
    try:
        async with session.get(url) as response:
            if response.status != 200:
                return None
            return await response.text()
    except (TimeoutError, aiohttp.ClientError, OSError):
        return None


async def health(metrics_urls: Mapping[str, str]) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        texts = await asyncio.gather(*(_scrape(session, url) for url in metrics_urls.values()))
    answer = summarize(dict(zip(metrics_urls, texts, strict=True)))
    for service, url in zip(answer["services"], metrics_urls.values(), strict=True):
        service["metrics"] = url
    return answer


async def page(request: web.Request) -> web.StreamResponse:
    name = request.match_info.get("name") or "index.html"
    if name not in ASSETS:
        raise web.HTTPNotFound()
    return web.Response(
        body=asset(name),
        content_type=ASSETS[name],
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:",
        },
    )


async def redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/overview/")

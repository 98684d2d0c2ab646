"""`postbacks sink`: migrate, then run a writer per table until SIGTERM/SIGINT (flushing on the way out)."""

from __future__ import annotations

import asyncio
import logging

from postbacks import gc_tuning, shutdown
from postbacks import metrics as postbacks_metrics
from postbacks.groups import sink_group
from postbacks.metrics import GroupLag
from postbacks.settings import Settings
from postbacks.topics import Topics
from sinks import metrics
from sinks.clickhouse import ClickHouse, is_embedded
from sinks.endpoint import QueryEndpoint
from sinks.migrate import migrate
from sinks.sql_access import load_access
from sinks.tables import SPECS
from sinks.writer import TableWriter

log = logging.getLogger(__name__)


def service_metrics(settings: Settings, sink_metrics_port: int) -> dict[str, str]:
    """Where each service of the stack serves /metrics (the ports `postbacks up` gave them)."""

    def url(host: str, port: int) -> str:
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/metrics"

    return {
        "ingest": url(settings.ingest_host, settings.ingest_port),
        "stream": url(settings.metrics_host, settings.stream_metrics_port),
        "sink": url(settings.metrics_host, sink_metrics_port),
        "outbound": url(settings.metrics_host, settings.outbound_metrics_port),
    }


async def serve(settings: Settings) -> None:
    dsn = settings.effective_clickhouse_dsn
    clickhouse = ClickHouse(dsn)
    applied = await clickhouse.run(migrate, clickhouse.client, settings.clickhouse_raw_ttl_days)
    log.info("clickhouse ready", extra={"dsn": dsn.split("@")[-1], "migrations_applied": applied})
    sink_metrics_port = postbacks_metrics.serve(
        metrics.REGISTRY, settings.metrics_host, settings.sink_metrics_port
    )
    endpoint = None
    if is_embedded(dsn):
        endpoint = QueryEndpoint(
            dsn,
            settings.data_dir,
            load_access(settings.effective_sources_file),
            settings.clickhouse_http_host,
            settings.clickhouse_http_port,
            metrics_urls=service_metrics(settings, sink_metrics_port),
            rate_limit=(settings.clickhouse_http_rate, settings.clickhouse_http_burst),
        )
    if endpoint is not None:
        await endpoint.start()
    topics = Topics(settings.topic_prefix)
    lag = GroupLag(
        settings.kafka_bootstrap_servers,
        {sink_group(settings.topic_prefix, spec.name): [spec.topic(topics)] for spec in SPECS},
    )
    metrics.REGISTRY.register(lag.start())
    stop = asyncio.Event()
    shutdown.on_stop_signals(asyncio.get_running_loop(), stop.set, settings.shutdown_timeout_s, "sink")
    writers = [TableWriter(spec, settings, clickhouse) for spec in SPECS]
    gc_tuning.tune(settings.python_gc_threshold)
    try:
        await asyncio.gather(*(writer.run(stop) for writer in writers))
    finally:
        if endpoint is not None:
            await endpoint.stop()
        lag.stop()
        clickhouse.close()
        log.info(
            "sink stopped",
            extra={
                "inserted": {w.spec.name: w.inserted for w in writers},
                "undecodable": {w.spec.name: w.undecodable for w in writers},
            },
        )

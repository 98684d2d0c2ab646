"""Run one stream worker (`postbacks stream`): load configuration and plugins, start Faust."""

from __future__ import annotations

import asyncio
import logging
import tomllib
from pathlib import Path
from typing import Any

import faust

from postbacks import gc_tuning, shutdown
from postbacks import metrics as postbacks_metrics
from postbacks.catalog import load_catalog
from postbacks.groups import stream_group
from postbacks.metrics import GroupLag
from postbacks.settings import Settings
from postbacks.topics import Topics, ensure_topics
from stream import metrics
from stream.app import StreamApp
from stream.registry import load_plugins
from stream.rules import device
from stream.rules.dedup import resolve_policy

log = logging.getLogger(__name__)


def source_policies(path: Path) -> dict[str, str]:
    """Each source's dedup policy from the sources file (the only part of it the stream needs).

    `auto` (the default) becomes the identity of the source's vendor preset.
    """
    if not path.exists():
        return {}
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return {
        name: resolve_policy(str(spec.get("dedup_policy", "auto")), str(spec.get("preset", "generic")))
        for name, spec in data.get("sources", {}).items()
    }


def build(settings: Settings) -> StreamApp:
    plugins = load_plugins(settings.stream_plugins)
    device.warm_up()
    stream = StreamApp(
        settings, load_catalog(settings.catalog_file), source_policies(settings.effective_sources_file)
    )
    log.info(
        "stream worker configured",
        extra={
            "plugins": plugins,
            "worker": settings.stream_worker_name,
            "store": settings.stream_store,
            # "basic" means ua-parser's pure-Python parser: ~30x slower per unseen user agent.
            "ua_parser": device.resolver(),
            "app_id": stream.app.conf.id,
        },
    )
    return stream


def serve_metrics(settings: Settings, stream: StreamApp) -> None:
    """/metrics on its own thread: records in/out, held postbacks, the group's lag from Kafka."""
    postbacks_metrics.serve(metrics.REGISTRY, settings.metrics_host, settings.stream_metrics_port)
    metrics.REGISTRY.register(metrics.StreamRecords(stream))
    topics = Topics(settings.topic_prefix)
    group = {stream_group(settings.topic_prefix): [topics.postbacks_raw, topics.clicks_raw]}
    metrics.REGISTRY.register(GroupLag(settings.kafka_bootstrap_servers, group).start())


class _Worker(faust.Worker):
    """Faust's worker, whose stop ends within SHUTDOWN_TIMEOUT_S (postbacks.shutdown), whatever began it.

    SIGTERM/SIGINT, and a crash too: Faust stops the worker when a service crashes, and that stop
    commits first, which needs the broker. After a cluster failover one such commit waited for
    ever, and the worker neither worked nor exited (so nothing restarted it).
    """

    shutdown_timeout_s = Settings().shutdown_timeout_s

    def _schedule_shutdown(self, signal: Any) -> None:
        shutdown.arm(self.shutdown_timeout_s, "stream")
        super()._schedule_shutdown(signal)

    async def stop(self) -> None:
        shutdown.arm(self.shutdown_timeout_s, "stream")
        await super().stop()


def run(settings: Settings) -> None:
    """Blocks until SIGINT/SIGTERM; Faust then commits what was processed and stops (bounded)."""
    stream = build(settings)
    changelogs = stream.changelog_topics()
    asyncio.run(ensure_topics(settings, list(changelogs), configs=changelogs))
    stream.datadir.mkdir(parents=True, exist_ok=True)
    serve_metrics(settings, stream)
    worker = _Worker(
        stream.app, loglevel=settings.log_level.lower(), override_logging=False, redirect_stdouts=False
    )
    worker.shutdown_timeout_s = settings.shutdown_timeout_s
    gc_tuning.tune(settings.python_gc_threshold)
    worker.execute_from_commandline()

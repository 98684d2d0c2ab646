"""Run one stream worker (`postbacks stream`): load configuration and plugins, start Faust."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import faust

from postbacks.catalog import load_catalog
from postbacks.settings import Settings
from stream.app import StreamApp
from stream.registry import load_plugins
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
    stream = StreamApp(
        settings, load_catalog(settings.catalog_file), source_policies(settings.effective_sources_file)
    )
    log.info(
        "stream worker configured",
        extra={
            "plugins": plugins,
            "worker": settings.stream_worker_name,
            "store": settings.stream_store,
            "app_id": stream.app.conf.id,
        },
    )
    return stream


def run(settings: Settings) -> None:
    """Blocks until SIGINT/SIGTERM; Faust then commits what was processed and stops."""
    stream = build(settings)
    stream.datadir.mkdir(parents=True, exist_ok=True)
    worker = faust.Worker(
        stream.app, loglevel=settings.log_level.lower(), override_logging=False, redirect_stdouts=False
    )
    worker.execute_from_commandline()

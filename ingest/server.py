"""Run the ingest ASGI app under granian (Rust HTTP, uvloop), chosen by measurement (docs/benchmarks.md)."""

from __future__ import annotations

import math

from granian import Granian
from granian.constants import Interfaces, Loops

from postbacks.settings import Settings


def serve(settings: Settings) -> None:
    """Blocks until SIGINT/SIGTERM; granian then drains requests and runs the app's shutdown,
    killing a worker whose drain outlasts SHUTDOWN_TIMEOUT_S (a broker gone for good)."""
    Granian(
        target="ingest.app:create_app",
        factory=True,
        address=settings.ingest_host,
        port=settings.ingest_port,
        interface=Interfaces.ASGI,
        workers=settings.ingest_workers,
        loop=Loops.uvloop,
        log_access=False,
        backlog=2048,
        workers_kill_timeout=max(1, math.ceil(settings.shutdown_timeout_s)),
    ).serve()

"""Run the ingest ASGI app under granian (Rust HTTP, uvloop), chosen by measurement (docs/benchmarks.md)."""

from __future__ import annotations

from granian import Granian
from granian.constants import Interfaces, Loops

from postbacks.settings import Settings


def serve(settings: Settings) -> None:
    """Blocks until SIGINT/SIGTERM; granian then drains requests and runs the app's shutdown."""
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
    ).serve()

"""Baseline for the stream: a Faust agent that only iterates the events, Faust's per-event floor.

`python -m bench.faust_floor TOPIC TOTAL SAMPLES_FILE` (Kafka from KAFKA_BOOTSTRAP_SERVERS)
reads TOPIC as raw bytes with the worker's consumer settings, counts the events and
appends "<monotonic seconds> <count>" to SAMPLES_FILE every 0.25 s; it exits once it
has seen TOTAL events. No decoding, no table, no output: what the stream worker could
reach if its own work cost nothing and it still went through Faust per event.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import faust


def main(topic: str, total: int, samples: Path) -> None:
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    app = faust.App(
        id=f"faust-floor-{os.getpid()}",
        broker=[f"kafka://{server.strip()}" for server in bootstrap.split(",")],
        store="memory://",
        datadir=str(samples.parent / "faust-floor"),
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        autodiscover=False,
        topic_allow_declare=False,
    )
    source = app.topic(topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    seen = 0

    @app.agent(source)
    async def floor(stream: faust.StreamT[bytes]) -> None:
        nonlocal seen
        async for _event in stream.events():
            if not seen:  # when reading began: a --quick topic may be read whole before the first sample
                with samples.open("a") as out:
                    out.write(f"{time.monotonic()} 0\n")
            seen += 1

    async def sample() -> None:
        with samples.open("a") as out:
            out.write(f"{time.monotonic()} {seen}\n")
        if seen >= total:
            asyncio.get_running_loop().call_soon(os._exit, 0)  # done: no graceful Faust stop to wait for

    app.timer(0.25)(sample)
    worker = faust.Worker(app, loglevel="warning", override_logging=False, redirect_stdouts=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))

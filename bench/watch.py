"""When each record first appears on a topic, by request id: splits end-to-end latency by stage.

The end-to-end stage watches the stream's output topic with this while the load runs: ack →
on the topic is the stream worker's share, topic → visible in ClickHouse the sink's. A
librdkafka consumer on its own thread, so the bench's polling loop is not slowed by it.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import cast

from schemas import Codec


class TopicWatch:
    """Records `first seen` wall-clock times of request ids on `topic` until stopped."""

    def __init__(self, bootstrap: str, topic: str, schema: str) -> None:
        self.seen: dict[str, float] = {}
        self._bootstrap, self._topic, self._codec = bootstrap, topic, Codec(schema)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="topic-watch", daemon=True)

    def __enter__(self) -> TopicWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        from confluent_kafka import Consumer

        consumer = Consumer(
            {
                "bootstrap.servers": self._bootstrap,
                "group.id": f"bench-watch-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "latest",
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 20,
            }
        )
        consumer.subscribe([self._topic])
        try:
            while not self._stop.is_set():
                messages = consumer.consume(num_messages=10_000, timeout=0.05)
                now = time.time()
                for message in messages:
                    value = message.value()
                    if message.error() is not None or value is None:
                        continue
                    headers = cast(list[tuple[str, bytes]], message.headers() or [])
                    record = self._codec.decode(value, headers)
                    self.seen.setdefault(str(record.get("request_id")), now)
        finally:
            consumer.close()

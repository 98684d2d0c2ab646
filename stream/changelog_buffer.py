"""Faust's producer buffer, made to hold a commit until every table write is acknowledged.

Why. A table write (`table[key] = value`) cannot await, so Faust queues its changelog
record in the producer's buffer and a background task sends it. Before committing source
offsets Faust flushes that buffer, but `ProducerBuffer.flush` gives up after 0.1 s without
a send and does not count the record the task is sending at that moment. The commit then
lands while the changelog record is still in this process only; a crash right after leaves
the source offset committed and the state it produced nowhere: not in the changelog, and
overwritten in the local store when recovery replays the changelog. That loses outcomes
(a held postback whose click came is refused again as `unknown_click`). The kill tests in
tests/integration/test_stream.py caught it about once in six runs.

Here `flush` returns only when the queue is empty, no record is being handed over, and
every record handed over has been acknowledged by the broker. A record the broker refused
makes every later flush raise, so Faust's commit fails and the worker stops instead of
committing past state it could not keep (it resumes from the last commit: at least once).
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.transport.producer import ProducerBuffer
from faust.types.tuples import FutureMessage


class ChangelogWriteFailed(RuntimeError):
    """The broker refused a table's changelog record: offsets must not be committed past it."""


class DrainingProducerBuffer(ProducerBuffer):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.handing_over = 0
        self.unacknowledged: set[asyncio.Future[Any]] = set()
        self.failure: BaseException | None = None

    async def _send_pending(self, fut: FutureMessage) -> None:
        self.handing_over += 1
        try:
            delivery = await fut.message.channel.publish_message(fut, wait=False)
        finally:
            self.handing_over -= 1
        delivery = asyncio.ensure_future(delivery)
        self.unacknowledged.add(delivery)
        delivery.add_done_callback(self._on_delivered)

    def track(self, delivery: asyncio.Future[Any]) -> None:
        """A record sent around the buffer (stream/table_io.py): the flush waits for it all the same."""
        self.unacknowledged.add(delivery)
        delivery.add_done_callback(self._on_delivered)

    def _on_delivered(self, delivery: asyncio.Future[Any]) -> None:
        self.unacknowledged.discard(delivery)
        if not delivery.cancelled() and delivery.exception() is not None and self.failure is None:
            self.failure = delivery.exception()

    async def flush(self) -> None:
        while self.size or self.handing_over:
            if self.state != "running":
                raise RuntimeError(f"producer buffer {self.state} with {self.size} table writes unsent")
            self.message_sent.clear()
            try:
                # Re-check the state now and then: a stopping buffer sends nothing more.
                await asyncio.wait_for(self.message_sent.wait(), timeout=1.0)
            except TimeoutError:
                continue
        if self.unacknowledged:
            await asyncio.wait(list(self.unacknowledged))
        if self.failure is not None:
            raise ChangelogWriteFailed(f"a table changelog write failed: {self.failure!r}") from self.failure

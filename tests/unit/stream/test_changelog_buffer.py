"""The producer buffer must not let Faust commit while a table write is unsent or unacknowledged."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.producer import ProducerBuffer

from postbacks.catalog import EMPTY_CATALOG
from postbacks.settings import Settings
from stream.app import StreamApp
from stream.changelog_buffer import ChangelogWriteFailed, DrainingProducerBuffer


class SlowChannel:
    """Stands in for a changelog topic: hand-over and broker acknowledgement each wait for the test."""

    def __init__(self) -> None:
        self.handed_over = asyncio.Event()
        self.release_hand_over = asyncio.Event()
        self.deliveries: list[asyncio.Future[Any]] = []
        self.delivered = asyncio.Condition()

    async def publish_message(self, fut: Any, wait: bool = False) -> asyncio.Future[Any]:
        self.handed_over.set()
        await self.release_hand_over.wait()
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.deliveries.append(delivery)
        async with self.delivered:
            self.delivered.notify_all()
        return delivery

    async def handed_over_count(self, count: int) -> None:
        async with self.delivered:
            await asyncio.wait_for(self.delivered.wait_for(lambda: len(self.deliveries) >= count), 5.0)


def table_write(channel: SlowChannel) -> Any:
    return SimpleNamespace(message=SimpleNamespace(channel=channel))


@contextlib.asynccontextmanager
async def running(
    buffer_type: type[ProducerBuffer], channel: SlowChannel, *, stop_may_fail: bool = False
) -> AsyncIterator[ProducerBuffer]:
    """A started buffer; on the way out the channel lets every hand-over finish, then it stops."""
    buffer = buffer_type()
    buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))  # type: ignore[assignment]
    await buffer.start()
    try:
        yield buffer
    finally:
        channel.release_hand_over.set()
        # Stopping flushes too: after a refused write that raises, as every flush must.
        with contextlib.suppress(*((ChangelogWriteFailed,) if stop_may_fail else ())):
            await buffer.stop()


async def flush_returns_within(buffer: ProducerBuffer, seconds: float) -> bool:
    try:
        await asyncio.wait_for(buffer.flush(), timeout=seconds)
    except TimeoutError:
        return False
    return True


async def test_faust_own_buffer_returns_while_a_write_is_being_handed_over() -> None:
    """Why the draining buffer exists; if this starts failing, Faust fixed it and ours can go."""
    channel = SlowChannel()
    async with running(ProducerBuffer, channel) as buffer:
        buffer.put(table_write(channel))
        await channel.handed_over.wait()
        assert buffer.size == 0  # the record mid-hand-over is not counted
        assert await flush_returns_within(buffer, 0.5)


async def test_flush_waits_for_hand_over_then_for_the_broker() -> None:
    channel = SlowChannel()
    async with running(DrainingProducerBuffer, channel) as buffer:
        buffer.put(table_write(channel))
        await channel.handed_over.wait()
        flush = asyncio.ensure_future(buffer.flush())
        await asyncio.sleep(0.3)  # longer than Faust's 0.1 s give-up
        assert not flush.done()

        channel.release_hand_over.set()
        await channel.handed_over_count(1)
        await asyncio.sleep(0.3)
        assert not flush.done()  # handed over, not yet acknowledged

        channel.deliveries[0].set_result("metadata")
        await asyncio.wait_for(flush, timeout=2.0)


async def test_flush_sends_every_queued_write_first() -> None:
    channel = SlowChannel()
    channel.release_hand_over.set()
    async with running(DrainingProducerBuffer, channel) as buffer:
        for _ in range(250):
            buffer.put(table_write(channel))
        flush = asyncio.ensure_future(buffer.flush())
        await channel.handed_over_count(250)
        await asyncio.sleep(0.05)
        assert not flush.done()  # all handed over, none acknowledged
        for delivery in channel.deliveries:
            delivery.set_result("metadata")
        await asyncio.wait_for(flush, timeout=2.0)
        assert buffer.size == 0


async def test_a_refused_write_makes_every_later_flush_fail() -> None:
    channel = SlowChannel()
    channel.release_hand_over.set()
    async with running(DrainingProducerBuffer, channel, stop_may_fail=True) as buffer:
        buffer.put(table_write(channel))
        buffer.put(table_write(channel))
        await channel.handed_over_count(2)
        channel.deliveries[0].set_exception(RuntimeError("NotEnoughReplicas"))
        channel.deliveries[1].set_result("metadata")
        with pytest.raises(ChangelogWriteFailed, match="NotEnoughReplicas"):
            await buffer.flush()
        with pytest.raises(ChangelogWriteFailed):
            await buffer.flush()  # sticky: no commit may follow a lost table write


async def test_a_write_sent_around_the_buffer_is_waited_for_and_its_refusal_kept() -> None:
    """The batch path (stream/table_io.py) sends changelog records itself and tracks their deliveries."""
    channel = SlowChannel()
    async with running(DrainingProducerBuffer, channel, stop_may_fail=True) as buffer:
        assert isinstance(buffer, DrainingProducerBuffer)
        loop = asyncio.get_running_loop()
        acked: asyncio.Future[Any] = loop.create_future()
        refused: asyncio.Future[Any] = loop.create_future()
        buffer.track(acked)
        buffer.track(refused)
        flush = asyncio.ensure_future(buffer.flush())
        await asyncio.sleep(0.2)
        assert not flush.done()  # nothing queued, two deliveries outstanding
        acked.set_result("metadata")
        refused.set_exception(RuntimeError("NotEnoughReplicas"))
        with pytest.raises(ChangelogWriteFailed, match="NotEnoughReplicas"):
            await asyncio.wait_for(flush, timeout=2.0)


def test_the_stream_app_producer_uses_the_draining_buffer(tmp_path: Any) -> None:
    settings = Settings(data_dir=tmp_path, kafka_bootstrap_servers="127.0.0.1:1", stream_store="memory")
    app = StreamApp(settings, EMPTY_CATALOG, {}).app
    assert isinstance(app.producer.buffer, DrainingProducerBuffer)
    assert app.producer.buffer.app is app

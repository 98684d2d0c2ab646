"""The batch sender's hand-over in the background (stream/produce.py), against a producer double.

The double keeps aiokafka's rule that makes the hand-over worth doing in the background: a
partition holds one undrained batch, and a second `send_batch` for it waits until the first
is drained. What must hold: a partition's batches reach the producer in the order sent,
across calls; each future resolves with its own batch's acknowledgement, never before; a
failed hand-over fails that batch and every later one, and the next `send` raises; the
queue is bounded.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stream.produce import BatchSender, Outgoing


class Builder:
    def __init__(self, capacity: int) -> None:
        self.records: list[bytes | None] = []
        self.capacity = capacity

    def append(self, *, timestamp: Any, key: Any, value: bytes | None, headers: Any) -> object | None:
        if len(self.records) == self.capacity:
            return None
        self.records.append(value)
        return object()

    def record_count(self) -> int:
        return len(self.records)


class Producer:
    """aiokafka's producer as the sender sees it; `drain` and `ack` are the broker's side."""

    def __init__(self, capacity: int = 100) -> None:
        self.capacity = capacity
        self.handed: list[tuple[str, int, list[bytes | None]]] = []
        self.undrained: dict[tuple[str, int], asyncio.Event] = {}
        self.acks: list[asyncio.Future[Any]] = []
        self.refuse: BaseException | None = None

    def create_batch(self) -> Builder:
        return Builder(self.capacity)

    async def send_batch(self, builder: Builder, topic: str, *, partition: int) -> asyncio.Future[Any]:
        while (topic, partition) in self.undrained:
            await self.undrained[(topic, partition)].wait()
        if self.refuse is not None:
            raise self.refuse
        self.undrained[(topic, partition)] = asyncio.Event()
        self.handed.append((topic, partition, list(builder.records)))
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        return ack

    def drain(self) -> None:
        for event in self.undrained.values():
            event.set()
        self.undrained.clear()


def records(topic: str, partition: int, *values: bytes) -> list[Outgoing]:
    return [Outgoing(topic, None, value, None, partition) for value in values]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_send_returns_before_the_partition_drains_and_order_holds_across_sends() -> None:
    producer = Producer()
    sender = BatchSender(producer)
    first = await sender.send(records("t", 0, b"a", b"b") + records("t", 1, b"x"))
    second = await sender.send(records("t", 0, b"c"))  # would wait for the drain if awaited inline
    third = await sender.send(records("t", 1, b"y") + records("t", 0, b"d"))
    await settle()
    assert producer.handed == [("t", 0, [b"a", b"b"]), ("t", 1, [b"x"])]  # the rest waits for the drain
    for _ in range(3):
        producer.drain()
        await settle()
    assert [(t, p, v) for t, p, v in producer.handed if p == 0] == [
        ("t", 0, [b"a", b"b"]),
        ("t", 0, [b"c"]),
        ("t", 0, [b"d"]),
    ]
    assert [v for _, p, v in producer.handed if p == 1] == [[b"x"], [b"y"]]
    assert [s.count for s in first + second + third] == [2, 1, 1, 1, 1]
    assert not any(s.delivery.done() for s in first + second + third)  # handed over, not acknowledged


async def test_each_future_resolves_with_its_own_batchs_acknowledgement() -> None:
    producer = Producer(capacity=2)
    sender = BatchSender(producer)
    sent = await sender.send(records("t", 0, b"1", b"2", b"3"))  # cut in two batches
    await settle()
    producer.drain()
    await settle()
    assert [s.count for s in sent] == [2, 1] and len(producer.acks) == 2
    producer.acks[1].set_result("second")
    await settle()
    assert not sent[0].delivery.done() and sent[1].delivery.result() == "second"
    producer.acks[0].set_exception(RuntimeError("not leader"))
    await settle()
    with pytest.raises(RuntimeError, match="not leader"):
        sent[0].delivery.result()


async def test_a_failed_hand_over_fails_that_batch_every_later_one_and_the_next_send() -> None:
    producer = Producer()
    sender = BatchSender(producer)
    first = await sender.send(records("t", 0, b"a"))
    await settle()
    producer.refuse = RuntimeError("producer closed")
    later = await sender.send(records("t", 0, b"b") + records("t", 1, b"c"))
    producer.drain()
    await settle()
    assert not first[0].delivery.done()  # handed over before the failure: its ack decides
    for batch in later:
        with pytest.raises(RuntimeError, match="producer closed"):
            batch.delivery.result()
    with pytest.raises(RuntimeError, match="producer closed"):
        await sender.send(records("t", 2, b"d"))
    assert [v for _, _, v in producer.handed] == [[b"a"]]


async def test_a_full_queue_makes_send_wait_until_half_is_handed_over() -> None:
    producer = Producer()
    sender = BatchSender(producer, max_queued=4)
    await sender.send(records("t", 0, b"0"))
    await settle()  # handed over, undrained: what follows for partition 0 queues here
    for i in range(1, 4):
        await sender.send(records("t", 0, str(i).encode()))
    blocked = asyncio.ensure_future(sender.send(records("t", 0, b"4") + records("t", 0, b"5")))
    await settle()
    assert not blocked.done()  # 4 queued
    for left in (3, 2):
        producer.drain()
        await settle()
        assert not blocked.done(), left  # not yet below half
    producer.drain()
    await settle()
    assert blocked.done() and len(blocked.result()) == 1  # one batch: b"4" and b"5" share it
    for _ in range(2):
        producer.drain()
        await settle()
    assert [v for _, _, v in producer.handed] == [[b"0"], [b"1"], [b"2"], [b"3"], [b"4", b"5"]]

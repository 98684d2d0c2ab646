"""The load generator's response framing and the preload's partitioning, without a server or broker."""

from __future__ import annotations

import argparse
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from bench.loadgen import Connection, Generator
from bench.stack import partition_of


class Recorder(Generator):
    def __init__(self) -> None:
        args = argparse.Namespace(
            host="h",
            port=1,
            path="/p?i={i}&k={k}",
            keys=3,
            rate=1.0,
            connections=1,
            warmup=0,
            seconds=60,
            acks="x",
        )
        super().__init__(args)
        self.answers: list[tuple[int, bytes]] = []

    def answered(self, connection: Connection, status: int, body: bytes) -> None:
        self.answers.append((status, body))
        super().answered(connection, status, body)


def response(status: int, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status} X\r\nContent-Type: text/json\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        + body
    )


def test_responses_are_framed_by_content_length_across_any_split() -> None:
    stream = response(200, b'{"status":"accepted","request_id":"r1"}') + response(400, b'{"reason":"x"}')
    stream += response(200, b'{"request_id": "r2"}')
    for cut in range(1, len(stream)):
        generator = Recorder()
        connection = Connection(generator)
        connection.data_received(stream[:cut])
        connection.data_received(stream[cut:])
        assert [s for s, _ in generator.answers] == [200, 400, 200], cut
        assert generator.tally.ok == 2 and generator.tally.non_2xx == 1
        assert [rid for rid, _ in generator.tally.acks or []] == ["r1", "r2"]


def test_requests_number_themselves_and_cycle_keys() -> None:
    generator = Recorder()
    first, second, _, fourth = (generator.request() for _ in range(4))
    assert first.startswith(b"GET /p?i=0&k=0 HTTP/1.1\r\n") and first.endswith(b"\r\n\r\n")
    assert second.startswith(b"GET /p?i=1&k=1 ")
    assert fourth.startswith(b"GET /p?i=3&k=0 ")


def test_preload_partitions_keys_as_the_producers_default_partitioner() -> None:
    default: Any = DefaultPartitioner()
    for key in [b"c0", b"c1", b"0123456789abcdef0123456789abcdef", "é".encode()]:
        assert partition_of(key, 6) == default(key, list(range(6)), list(range(6)))

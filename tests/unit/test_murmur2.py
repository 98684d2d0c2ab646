"""The fast murmur2 partitioner places every key where aiokafka's (and the Java client's) does."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from postbacks.murmur2 import KeyPartitioner, murmur2


@given(st.binary(max_size=2048))
def test_same_hash_as_aiokafka_for_any_bytes(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)


def test_java_client_values() -> None:
    # org.apache.kafka.common.utils.UtilsTest#testMurmur2, read as unsigned 32-bit ints.
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for data, signed in cases.items():
        assert murmur2(data) == signed & 0xFFFFFFFF, data


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=300))
def test_same_partition_as_aiokafka(key: bytes, count: int) -> None:
    partitions = list(range(count))
    assert KeyPartitioner()(key, partitions, partitions) == DefaultPartitioner()(key, partitions, partitions)


def test_keyless_records_go_to_an_available_partition() -> None:
    chosen = {KeyPartitioner()(None, [0, 1, 2, 3], [1, 3]) for _ in range(200)}
    assert chosen == {1, 3}
    assert KeyPartitioner()(None, [0, 1], []) in {0, 1}

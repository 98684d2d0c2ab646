"""Avro longs one at a time (schemas/varint.py): fastavro's bytes, read back, refused when cut or too long."""

from __future__ import annotations

import io

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.varint import Truncated, encode_long, encode_unsigned, read_long

LONGS = [
    0,
    1,
    -1,
    63,
    64,
    -64,
    -65,
    127,
    128,
    300,
    2**31 - 1,
    2**34 - 1,  # the edges of the six-byte range encode_unsigned spells out
    2**34,
    -(2**34) - 1,
    1_764_800_000_000,  # a millisecond timestamp (2025)
    2**41 - 1,
    2**41,
    -(2**41),
    -(2**41) - 1,
    2**40 + 3,
    -(2**40),
    2**62,
    2**63 - 1,
    -(2**63),
]


@pytest.mark.parametrize("n", LONGS)
def test_a_long_is_avros_zigzag_varint_and_reads_back(n: int) -> None:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, {"type": "long"}, n)
    assert encode_long(n) == out.getvalue()
    assert read_long(b"\x07" + out.getvalue() + b"\x09", 1) == (n, 1 + len(out.getvalue()))


@pytest.mark.parametrize("n", [n for n in LONGS if n >= 0])
def test_an_unsigned_varint_is_a_longs_bytes_after_its_zigzag(n: int) -> None:
    assert encode_unsigned(2 * n) == encode_long(n)


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_any_long_is_avros_zigzag_varint(n: int) -> None:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, {"type": "long"}, n)
    assert encode_long(n) == out.getvalue()
    assert read_long(out.getvalue(), 0) == (n, len(out.getvalue()))


def test_a_cut_or_overlong_varint_is_refused() -> None:
    with pytest.raises(Truncated):
        read_long(encode_long(2**40)[:-1], 0)
    with pytest.raises(Truncated):
        read_long(b"", 0)
    with pytest.raises(Truncated):
        read_long(b"\xff" * 10 + b"\x01", 0)  # 11 bytes: beyond 64 bits

"""Avro's zig-zag varints (its int and long), one at a time, outside a compiled codec.

The compiled codecs (schemas/reader.py, schemas/writer.py) inline these in generated code.
Code that works on a datum's bytes without decoding it needs them one at a time: the sink
reads the identity fields off a datum's front and writes an Avro container's framing
(sinks/avro_block.py); the stream cuts a new click's state out of the click's bytes
(stream/click_splice.py).
"""

from __future__ import annotations

_ONE_BYTE = [bytes([n]) for n in range(0x80)]


class Truncated(ValueError):
    """The bytes end inside a value, or a varint runs past 64 bits: not a datum of the schema assumed."""


def read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """The long (or int) at `pos`: its value and the position after it."""
    shift = z = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise Truncated("varint runs past the end")
        byte = buf[pos]
        pos += 1
        z |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (z >> 1) ^ -(z & 1), pos
        shift += 7
        if shift > 63:
            raise Truncated("varint longer than 64 bits")


def encode_long(value: int) -> bytes:
    """A long (or int): zig-zag, then 7 bits a byte, low bits first."""
    z = (value << 1) ^ (value >> 63)
    return _ONE_BYTE[z] if z < 0x80 else encode_unsigned(z)


def encode_unsigned(z: int) -> bytes:
    """A non-negative number 7 bits a byte, low bits first: a long's bytes after its zig-zag.

    Six bytes (2^35 to 2^42) spelled out: a millisecond timestamp's zig-zag is that long
    until 2109, and the click path writes one for every click (its state's expiry).
    """
    if 0x800000000 <= z < 0x40000000000:
        return bytes(
            (
                z & 0x7F | 0x80,
                z >> 7 & 0x7F | 0x80,
                z >> 14 & 0x7F | 0x80,
                z >> 21 & 0x7F | 0x80,
                z >> 28 & 0x7F | 0x80,
                z >> 35,
            )
        )
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)

"""A new click's state cut from its bytes is byte for byte what decoding and re-encoding it gives.

stream/click_splice.py skips fastavro on the click path; this holds it to fastavro:
for any click the click schema can carry (unicode, nulls, long ids, big timestamps,
an `extra` map of any size, a referrer the state leaves out), the spliced state equals
`StateCodec.dump_state` of the state `Decider.on_click` builds, and reads back the same.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postbacks.settings import Settings
from schemas import CLICK, Codec
from schemas.varint import Truncated
from stream.batch import BatchDecider, Source
from stream.decide import Decider
from tests.unit.stream.conftest import CATALOG, CLICK_AT, click

CLICKS = Codec(CLICK, millis=True)
DECIDER = Decider(Settings(), CATALOG, {}, {})
BATCH = BatchDecider(DECIDER)

text = st.text(max_size=80)
optional = st.none() | text


class NoTables:
    def get(self, key: bytes, partition: int) -> bytes | None:
        return None

    def entries(self) -> list[tuple[bytes, bytes]]:
        return []


@st.composite
def clicks(draw: st.DrawFn) -> dict[str, Any]:
    fields: dict[str, Any] = {
        name: draw(optional)
        for name in ("campaign_id", "pub_click_id", "sub1", "sub2", "sub3", "sub4", "sub5", "user_agent")
    }
    return click(
        draw(st.text(min_size=1, max_size=64)),
        offer_id=draw(st.sampled_from(["o1", "o2", "unknown-offer", "é"])),
        at=draw(st.integers(min_value=0, max_value=2**62)),
        publisher_id=draw(text),
        ip=draw(text),
        referrer=draw(optional),
        country_code=draw(optional),
        extra=draw(st.dictionaries(text, text, max_size=6)),
        **fields,
    )


@settings(max_examples=300, deadline=None)
@given(clicks())
def test_the_spliced_state_is_fastavros_encoding_of_the_decided_state(record: dict[str, Any]) -> None:
    value = CLICKS.encode(record)
    result = BATCH.run([Source(0, 0, CLICK, value, CLICKS.headers)], NoTables(), NoTables())  # type: ignore[arg-type]
    [(key, written)] = result.states.items()
    state, emits = DECIDER.on_click(None, CLICKS.decode(value, CLICKS.headers))
    assert key == record["click_id"].encode() and emits == [] and state is not None
    assert written.value == BATCH.codec.dump_state(state)
    assert BATCH.codec.load_state(written.value) == state


def test_bytes_that_are_not_a_whole_click_are_declined() -> None:
    value = CLICKS.encode(click("c1"))
    splicer = BATCH.splicers[CLICKS.version]
    for cut in (value[:-1], value + b"\x00", value[:5]):
        with pytest.raises(Truncated):
            splicer.splice(cut)


@settings(max_examples=100, deadline=None)
@given(clicks(), st.binary(min_size=1, max_size=3))
def test_every_cut_of_a_click_and_every_extra_byte_is_declined(record: dict[str, Any], extra: bytes) -> None:
    """The generated reads turn running off the end into Truncated, never an IndexError or a wrong state."""
    value = CLICKS.encode(record)
    splicer = BATCH.splicers[CLICKS.version]
    assert splicer.splice(value)[0] == record["click_id"]
    for end in range(len(value)):
        with pytest.raises(Truncated):
            splicer.splice(value[:end])
    with pytest.raises(Truncated):
        splicer.splice(value + extra)


def test_a_known_click_takes_the_general_path() -> None:
    """A replayed click changes nothing: the spliced path must not overwrite its state."""
    value = CLICKS.encode(click("c1", at=CLICK_AT))
    first = BATCH.run([Source(0, 0, CLICK, value, CLICKS.headers)], NoTables(), NoTables())  # type: ignore[arg-type]
    stored = first.states[b"c1"].value

    class Stored(NoTables):
        def get(self, key: bytes, partition: int) -> bytes | None:
            return stored if key == b"c1" else None

    again = BATCH.run([Source(0, 1, CLICK, value, CLICKS.headers)], Stored(), NoTables())  # type: ignore[arg-type]
    assert again.states == {} and again.emits == []

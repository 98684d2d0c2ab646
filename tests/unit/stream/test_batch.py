"""Deciding in batches gives exactly what deciding one record at a time gives, for any cut.

The agent (stream/app.py) hands stream/batch.py whatever batch Faust gave it; a batch
size is not a property of the data, so no output may depend on it. Generated logs mix
clicks, postbacks (before and after their click, retries, status updates), clock
ticks and poison records over a few partitions; the same log is run one record per
batch and cut into random batches, applying each batch's writes as the agent does.
Outputs (bytes, in order), dead letters and the final tables must be identical.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from postbacks.settings import Settings
from schemas import CLICK, POSTBACK_RAW, STREAM_TICK, Codec, SchemaError
from stream.batch import BatchDecider, Source, Written
from stream.decide import Decider, Emit
from tests.unit.stream.conftest import CATALOG, CLICK_AT, click, postback

CLICKS, RAW = Codec(CLICK, millis=True), Codec(POSTBACK_RAW, millis=True)
TICKS = Codec(STREAM_TICK, millis=True)
CLICK_IDS = ("c1", "c2", "c3", "c4", "never")  # "never" has no click at all


class Tables:
    """A table as the agent's TableIO presents it: values by key, in their partition."""

    def __init__(self) -> None:
        self.data: dict[bytes, tuple[int, bytes]] = {}

    def get(self, key: bytes, partition: int) -> bytes | None:
        found = self.data.get(key)
        return found[1] if found is not None and found[0] == partition else None

    def entries(self) -> Iterable[tuple[bytes, bytes]]:
        return [(key, value) for key, (_, value) in self.data.items()]

    def write(self, writes: dict[bytes, Written]) -> None:
        for key, written in writes.items():
            if written.value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = (written.partition, written.value)


def partition_of(click_id: str) -> int:
    return sum(click_id.encode()) % 2  # co-partitioned: a click and its postbacks share one


@st.composite
def logs(draw: st.DrawFn) -> list[Source]:
    """One interleaving of the sources as the agent reads them, offsets per (topic, partition)."""
    offsets: dict[tuple[str, int], int] = {}
    records: list[Source] = []

    def add(kind: str, partition: int, value: bytes, headers: Any) -> None:
        offset = offsets.setdefault((kind, partition), 0)
        offsets[(kind, partition)] = offset + 1
        schema = dict(headers).get("schema")
        records.append(Source(partition, offset, schema.decode() if schema else None, value, headers))

    steps = draw(
        st.lists(
            st.one_of(
                st.tuples(st.just("click"), st.sampled_from(CLICK_IDS[:4]), st.integers(0, 8_000)),
                st.tuples(
                    st.just("postback"),
                    st.sampled_from(CLICK_IDS),
                    st.integers(0, 8_000),
                    st.sampled_from([None, "T1", "T2"]),
                    st.sampled_from([None, "pending", "approved", "rejected"]),
                ),
                st.tuples(st.just("tick"), st.integers(0, 1), st.integers(0, 20_000)),
                st.tuples(st.just("poison"), st.integers(0, 1)),
            ),
            max_size=40,
        )
    )
    retries: list[dict[str, Any]] = []
    for step in steps:
        if step[0] == "click":
            _, cid, at = step
            add("clicks", partition_of(cid), CLICKS.encode(click(cid, at=CLICK_AT + at)), CLICKS.headers)
        elif step[0] == "postback":
            _, cid, at, txid, status = step
            if retries and draw(st.booleans()):
                record = dict(draw(st.sampled_from(retries)))  # the same request, sent again
            else:
                record = postback(
                    cid,
                    received_at=CLICK_AT + at,
                    install_time=CLICK_AT + 15_000,
                    transaction_id=txid,
                    status=status,
                )
                retries.append(record)
            add("postbacks", partition_of(record["click_id"]), RAW.encode(record), RAW.headers)
        elif step[0] == "tick":
            _, partition, at = step
            add("clicks", partition, TICKS.encode({"at": CLICK_AT + at}), TICKS.headers)
        else:
            add("postbacks", step[1], b"\xff\xff\xff", RAW.headers)  # right header, not Avro
    return records


def run(batcher: BatchDecider, records: Sequence[Source], cuts: Sequence[int]) -> tuple[Any, ...]:
    """Run `records` in batches ending at `cuts`, writing each batch's tables as the agent does."""
    states, index = Tables(), Tables()
    emits: list[Emit] = []
    dead: list[tuple[Source, str]] = []
    start = 0
    for end in [*sorted(set(cuts)), len(records)]:
        if end <= start:
            continue
        result = batcher.run(records[start:end], states, index)
        emits += result.emits
        dead += [(source, str(exc)) for source, exc in result.dead]
        states.write(result.states)
        index.write(result.index)
        start = end
    return emits, dead, states.data, index.data


def batcher(keep_decoded: int = 8) -> BatchDecider:
    """Few decoded states kept: the property tests also run states evicted and states reused."""
    s = Settings(ctit_min_s=0, unknown_click_grace_s=4.0, click_max_delay_s=1.0)
    return BatchDecider(Decider(s, CATALOG, {}, {}), keep_decoded)


@settings(max_examples=300, deadline=None)
@given(records=logs(), data=st.data())
def test_any_batch_boundaries_give_the_one_at_a_time_outputs_and_tables(
    records: list[Source], data: st.DataObject
) -> None:
    b = batcher()
    one_at_a_time = run(b, records, range(1, len(records)))
    cuts = data.draw(st.lists(st.integers(0, len(records)), max_size=6), label="batch ends")
    assert run(b, records, cuts) == one_at_a_time


@settings(max_examples=200, deadline=None)
@given(records=logs(), data=st.data(), keep=st.sampled_from([1, 2, 100]))
def test_decoded_states_kept_between_batches_change_nothing(
    records: list[Source], data: st.DataObject, keep: int
) -> None:
    """The same batches with no state kept decoded; and each kept state is its bytes' decoding."""
    cuts = data.draw(st.lists(st.integers(0, len(records)), max_size=6), label="batch ends")
    keeping = batcher(keep)
    assert run(keeping, records, cuts) == run(batcher(0), records, cuts)
    assert len(keeping.decoded) <= keep
    for _key, (raw, state, _parts) in keeping.decoded.items():
        assert keeping.codec.load_state(raw) == state


def test_a_kept_state_is_used_only_while_the_table_holds_its_bytes(monkeypatch: Any) -> None:
    b = batcher()
    states, index = Tables(), Tables()

    def postback_record(offset: int, txid: str) -> Source:
        return Source(
            0,
            offset,
            POSTBACK_RAW,
            RAW.encode(postback("c1", event_name="purchase", transaction_id=txid)),
            RAW.headers,
        )

    first = [Source(0, 0, CLICK, CLICKS.encode(click("c1")), CLICKS.headers), postback_record(0, "T1")]
    states.write(b.run(first, states, index).states)
    decodes = 0
    load_state = b.codec.load_state

    def counting(raw: bytes) -> Any:
        nonlocal decodes
        decodes += 1
        return load_state(raw)

    monkeypatch.setattr(b.codec, "load_state", counting)
    key = b"c1"
    partition, raw = states.data[key]
    states.data[key] = (partition, bytes(bytearray(raw)))  # equal bytes, another object
    second = b.run([postback_record(1, "T2")], states, index)
    assert decodes == 0  # the state the first batch wrote, kept decoded
    assert key in second.states  # and decided on: a new conversion in it
    states.write(second.states)

    partition, raw = states.data[key]
    later = load_state(raw)["expires_at"] + 1
    changed = b.codec.dump_state({**load_state(raw), "expires_at": later})
    states.data[key] = (partition, changed)  # what a recovery or another worker left in the table
    result = b.run([postback_record(2, "T3")], states, index)
    assert decodes == 1  # decoded from the table again
    assert load_state(result.states[key].value or b"")["expires_at"] == later


def test_a_poison_record_in_a_batch_is_set_aside_and_the_rest_is_decided() -> None:
    b = batcher()
    good = postback("c1", received_at=CLICK_AT + 1_000, install_time=CLICK_AT + 15_000)
    records = [
        Source(0, 0, CLICK, CLICKS.encode(click("c1")), CLICKS.headers),
        Source(0, 0, POSTBACK_RAW, b"\xff\xff\xff", RAW.headers),
        Source(0, 1, "no_such_schema", b"hello", []),
        Source(0, 2, POSTBACK_RAW, RAW.encode(good), RAW.headers),
    ]
    result = b.run(records, Tables(), Tables())
    assert [source.offset for source, _ in result.dead] == [0, 1]
    assert all(isinstance(exc, SchemaError) for _, exc in result.dead)
    assert [e.kind for e in result.emits] == ["conversion"]
    assert not result.wait_for_outputs  # the hot path: nothing held was decided


def test_a_click_deciding_held_postbacks_makes_the_batch_wait_for_its_outputs() -> None:
    b = batcher()
    early = postback("c1", received_at=CLICK_AT + 1_000, install_time=CLICK_AT + 15_000)
    records = [
        Source(0, 0, POSTBACK_RAW, RAW.encode(early), RAW.headers),
        Source(0, 0, CLICK, CLICKS.encode(click("c1")), CLICKS.headers),
    ]
    result = b.run(records, Tables(), Tables())
    assert [e.kind for e in result.emits] == ["conversion"] and result.wait_for_outputs
    assert list(result.states) == [b"c1"]  # held and then decided: one write for the key
    assert result.index[b"c1"].value is None  # nothing held any more

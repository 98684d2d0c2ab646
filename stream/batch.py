"""A batch of source records decided in memory: each click's state read once and written once.

Why. Per event, the worker paid Faust's table machinery twice (a get and a set, each
with its changelog record) and an await per output. Here the agent hands a whole
batch of records (stream/app.py) to `BatchDecider.run`, which reads each touched
click state once from the table, runs the pure decisions of stream/decide.py on the
in-memory copy in log order, and returns what the batch changed: the outputs in the
order they were decided, the final value of each touched state and index entry (one
changelog record per key per batch), and the records that did not decode (poison,
kept for the dead-letter topic; the rest of the batch goes on).

Running a batch of n records gives exactly what running the same records one at a
time gives, for any cut into batches (tests/unit/stream/test_batch.py): a batch only
delays the writes, and every read in the batch sees the batch's own writes first.

Decoded states outlive a batch (`DecodedStates`): a click with many postbacks is touched by
many batches, and decoding its state back from the bytes the previous batch wrote was a
sixth of the worker's time. A kept state is used only while the table still holds exactly
the bytes it was written as, so whatever else wrote the table (a rebalance, a recovery, a
batch whose writes were dropped) the state is decoded from the table again.

`wait_for_outputs` is the rule of the rare paths (stream/app.py "Guarantees"): when a
click or a tick decided held postbacks, their outputs must be acknowledged before
any state of the batch is written, so a crash repeats them rather than loses them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple, Protocol

from schemas import CLICK, CLICK_STATE, POSTBACK_RAW, STREAM_TICK, Codec, SchemaError, all_versions, latest
from schemas.varint import Truncated, encode_long
from stream.click_splice import ClickSplicer
from stream.decide import Decider, Emit
from stream.state import STATE_CLICK_FIELDS, ClickState, PendingIndex, StateCodec
from stream.state_bytes import StateWriter, WrittenParts


class Source(NamedTuple):
    """One record of `clicks.raw` or `postbacks.raw`, as the batch needs it (a tuple: one per record)."""

    partition: int
    offset: int
    schema: str | None  # the record's `schema` header
    value: bytes
    headers: Any  # what schemas.Codec reads the writer's schema version from


class Reader(Protocol):
    """The table as the batch reads it: a value by key, in the partition the key lives in."""

    def get(self, key: bytes, partition: int) -> bytes | None: ...


class IndexReader(Reader, Protocol):
    def entries(self) -> Iterable[tuple[bytes, bytes]]: ...


@dataclass
class Written:
    """A key's final value after the batch (None: delete it) and the partition it lives in."""

    partition: int
    value: bytes | None


@dataclass
class BatchResult:
    emits: list[Emit] = field(default_factory=list)
    states: dict[bytes, Written] = field(default_factory=dict)
    index: dict[bytes, Written] = field(default_factory=dict)
    dead: list[tuple[Source, SchemaError]] = field(default_factory=list)
    wait_for_outputs: bool = False
    counts: dict[str, int] = field(default_factory=lambda: {"clicks": 0, "postbacks": 0, "ticks": 0})


class DecodedStates:
    """The last states the batches wrote, decoded, each with the bytes it was written as (LRU).

    A state is taken out when a batch reads it (the batch may change it in place) and put
    back only when the batch writes it again, so a kept state always equals the decoding
    of the bytes kept with it.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._kept: OrderedDict[bytes, tuple[bytes, ClickState, WrittenParts]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def take(self, key: bytes, raw: bytes) -> tuple[ClickState, WrittenParts] | None:
        """The state decoded from `raw` and what it was written from, if kept for `key`; no longer kept."""
        kept = self._kept.pop(key, None)
        if kept is None or kept[0] != raw:
            return None
        return kept[1], kept[2]

    def keep(self, key: bytes, raw: bytes, state: ClickState, parts: WrittenParts) -> None:
        if self.capacity <= 0:
            return
        kept = self._kept
        kept[key] = (raw, state, parts)
        kept.move_to_end(key)
        while len(kept) > self.capacity:
            kept.popitem(last=False)

    def items(self) -> Iterable[tuple[bytes, tuple[bytes, ClickState, WrittenParts]]]:
        return self._kept.items()


class BatchDecider:
    def __init__(self, decider: Decider, keep_decoded: int = 0) -> None:
        self.decider = decider
        self.codec = StateCodec()
        self.decoded = DecodedStates(keep_decoded)
        self.writer = StateWriter()
        self._clicks = Codec(CLICK, millis=True)
        self._ticks = Codec(STREAM_TICK, millis=True)
        self.splicers = _splicers()
        # A new click's state: version byte, union branch 1 (a click), the click, expires_at, [], [].
        self.new_state_head = bytes((latest(CLICK_STATE).version,)) + b"\x02"
        # The click TTL of an offer, remembered (a decider's catalog is fixed for its life): every
        # new click asks. Bounded: the offer ids asked for are whatever the clicks carry.
        self.ttl_ms: Callable[[str], int] = lru_cache(maxsize=10_000)(decider.ttl_ms)

    def new_click_state(self, spliced: bytes, expires_at: int) -> bytes:
        """The bytes StateCodec.dump_state writes for a new click (tests/unit/stream/test_click_splice.py)."""
        return self.new_state_head + spliced + encode_long(expires_at) + b"\x00\x00"

    def run(self, records: Sequence[Source], states: Reader, index: IndexReader) -> BatchResult:
        """Decide `records` in order; nothing is written: the caller applies the result."""
        return _Run(self, states, index).run(records)


def _splicers() -> dict[int, ClickSplicer]:
    """A splicer for each writer version of the click schema whose fields the state can take as they are."""
    state_click = next(
        branch for branch in latest(CLICK_STATE).declared["fields"][0]["type"] if isinstance(branch, dict)
    )
    found = {}
    for version, schema in all_versions()[CLICK].items():
        try:
            found[version] = ClickSplicer(schema.declared, state_click, STATE_CLICK_FIELDS)
        except ValueError:
            continue  # decoded and encoded the general way
    return found


_ABSENT = object()


class _Run:
    """One batch: the touched states, decoded once, and what the batch wrote over the tables."""

    def __init__(self, owner: BatchDecider, states: Reader, index: IndexReader) -> None:
        self.d = owner.decider
        self.codec = owner.codec
        self.owner = owner
        self.tables = states
        self.index_table = index
        # A state as bytes is one the batch built that way (a new click): decoded only if read again.
        self.cache: dict[bytes, ClickState | bytes | None] = {}
        self.partition_of: dict[bytes, int] = {}
        self.dirty: set[bytes] = set()
        self.written_from: dict[bytes, WrittenParts] = {}  # for states kept decoded since their write
        self.result = BatchResult()

    def run(self, records: Sequence[Source]) -> BatchResult:
        result = self.result
        for record in records:
            try:
                if record.schema == POSTBACK_RAW:
                    self._postback(record)
                elif record.schema == CLICK:
                    self._click(record)
                elif record.schema == STREAM_TICK:
                    self._tick(record)
                else:
                    raise SchemaError(f"unexpected schema header {record.schema!r}")
            except SchemaError as exc:
                result.dead.append((record, exc))
        decoded = self.owner.decoded
        for key in self.dirty:
            state = self.cache[key]
            if isinstance(state, bytes):
                value: bytes | None = state
            elif state is None or (
                state["click"] is None and not state["pending"] and not state["decisions"]
            ):
                value = None  # nothing left to keep
            else:
                value, parts = self.owner.writer.dump(state, self.written_from.get(key))
                decoded.keep(key, value, state, parts)
            result.states[key] = Written(self.partition_of[key], value)
        return result

    # -- state, read once and written once per batch ------------------------------------------

    def _load(self, key: bytes, partition: int) -> ClickState | None:
        cached = self.cache.get(key, _ABSENT)
        if isinstance(cached, bytes):
            cached = self.cache[key] = self._decode(key, cached)
        if cached is not _ABSENT:
            return cached  # type: ignore[return-value]
        raw = self.tables.get(key, partition)
        state = None
        if raw is not None:
            kept = self.owner.decoded.take(key, raw)
            if kept is None:
                state = self._decode(key, raw)
            else:
                state, self.written_from[key] = kept
        self.cache[key] = state
        self.partition_of[key] = partition
        return state

    def _decode(self, key: bytes, raw: bytes) -> ClickState:
        state = self.codec.load_state(raw)
        parts = self.owner.writer.parts_of_bare(state, raw)
        if parts is not None:
            self.written_from[key] = parts
        return state

    def _save(self, key: bytes, state: ClickState, partition: int) -> None:
        self.cache[key] = state
        self.partition_of[key] = partition
        self.dirty.add(key)

    def _index(self, key: bytes, state: ClickState | None, partition: int) -> None:
        """Let the clock find a state holding postbacks, by when the first of them is due."""
        due = None if state is None else self.d.due_at(state)
        value = None if due is None else self.codec.dump_index({"partition": partition, "due_at": due})
        self.result.index[key] = Written(partition, value)

    def _index_entries(self) -> list[tuple[bytes, PendingIndex]]:
        """The pending index as the batch left it: the table's entries, then the batch's own writes."""
        entries = {key: raw for key, raw in self.index_table.entries()}
        for key, written in self.result.index.items():
            if written.value is None:
                entries.pop(key, None)
            else:
                entries[key] = written.value
        return [(key, self.codec.load_index(raw)) for key, raw in entries.items()]

    # -- the three kinds of record -------------------------------------------------------------

    def _click(self, record: Source) -> None:
        self.result.counts["clicks"] += 1
        if self._new_click(record):
            return
        click = self.owner._clicks.decode(record.value, record.headers)
        key = str(click["click_id"]).encode()
        state = self._load(key, record.partition)
        updated, emits = self.d.on_click(state, click)
        if updated is None:
            return  # already known: a replay, or a re-sent click
        if emits:
            self.result.emits += emits
            self.result.wait_for_outputs = True  # outputs first: a crash repeats them, never loses them
            self.result.index[key] = Written(record.partition, None)
        self._save(key, updated, record.partition)

    def _new_click(self, record: Source) -> bool:
        """The common case, a click never seen: its state cut from its bytes (stream/click_splice.py).

        False leaves the record to the general path: a click already known (a replay, or
        postbacks held for it), a writer version the splicer does not read, or bytes that
        are not a click (the general path dead-letters those with fastavro's reason).
        """
        owner = self.owner
        try:
            splicer = owner.splicers.get(owner._clicks.writer_version(record.headers))
            if splicer is None:
                return False
            click_id, clicked_at, offer_id, spliced = splicer.splice(record.value)
        except (SchemaError, Truncated, UnicodeDecodeError):
            return False
        key = click_id.encode()
        cached = self.cache.get(key, _ABSENT)
        if cached is _ABSENT:
            if self.tables.get(key, record.partition) is not None:
                return False
        elif cached is not None:
            return False
        value = owner.new_click_state(spliced, clicked_at + owner.ttl_ms(offer_id))
        self.cache[key] = value
        self.partition_of[key] = record.partition
        self.dirty.add(key)
        return True

    def _postback(self, record: Source) -> None:
        self.result.counts["postbacks"] += 1
        raw = self.d.raw
        postback = raw.decode(record.value, record.headers)
        key = str(postback["click_id"]).encode()
        state = self._load(key, record.partition)
        if state is None or state["click"] is None:
            version = raw.writer_version(record.headers)
            held = self.d.hold(state, record.offset, int(postback["received_at"]), record.value, version)
            self._save(key, held, record.partition)
            self._index(key, held, record.partition)
            return
        outcome = self.d.on_postback(state, postback, record.offset)
        if outcome.state_changed:
            self._save(key, state, record.partition)
        self.result.emits += outcome.emits

    def _tick(self, record: Source) -> None:
        """A clock mark in the clicks log: refuse held postbacks whose click never came."""
        self.result.counts["ticks"] += 1
        at = int(self.owner._ticks.decode(record.value, record.headers)["at"])
        partition = record.partition
        due = [
            key
            for key, entry in self._index_entries()
            if entry["partition"] == partition and entry["due_at"] <= at
        ]
        for key in due:
            state = self._load(key, partition)
            if state is None or not state["pending"]:
                self.result.index[key] = Written(partition, None)
                continue
            emits = self.d.on_tick(state, at)
            if emits:
                self.result.emits += emits
                self.result.wait_for_outputs = True  # as for a click: repeats, never losses
            self._save(key, state, partition)
            self._index(key, state, partition)

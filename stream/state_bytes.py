"""A click state's bytes, re-using the bytes of its parts that did not change since it was last written.

Why. A click with many postbacks keeps one decision for each conversion, and each decision
keeps every record it emitted (stream/decide.py: a replay re-emits them). Every batch that
touches the click wrote the whole state again, so encoding it cost more with each postback:
with ~15 postbacks a click it was a third of the decision path. A batch changes one or two
of its decisions; the others are the same bytes as last time.

What counts as unchanged rests on how stream/decide.py changes a state: a decision is only
ever appended to the state's list, and a decision changes only by appending to its
`emitted` list; a new click replaces the state's `click` dict. So a decision is the bytes it
was last written as while it is the same object with as many emitted records, and the head
(click, expiry) while the click is the same object with the same expiry. Everything else is
encoded. The bytes are StateCodec.dump_state's, byte for byte (tests/unit/stream/
test_state_bytes.py, and the batch tests compare the tables written with and without it).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from schemas import CLICK_STATE, latest
from schemas.varint import encode_long
from schemas.writer import compile_writer
from stream.state import ClickState, Decision

Encoder = Callable[[Mapping[str, Any]], bytes]


class WrittenParts(NamedTuple):
    """What the last write of a state was made of, for the next write of the same state (a
    named tuple: one is made per state written)."""

    click: Any  # the state's click dict then (compared by identity)
    expires_at: int
    head: bytes  # the version byte, the click and the expiry, encoded
    decisions: tuple[Decision, ...]  # the decisions then (compared by identity)
    counts: tuple[int, ...]  # how many records each had emitted
    encoded: tuple[bytes, ...]  # each one's bytes
    body: bytes  # all of them, joined: the array's items


_emitted_of = operator.itemgetter("emitted")


class StateWriter:
    """StateCodec.dump_state's bytes, built from parts; the parts kept for the next write."""

    def __init__(self) -> None:
        schema = latest(CLICK_STATE)
        fields = {field["name"]: field for field in schema.declared["fields"]}
        if list(fields) != ["click", "expires_at", "decisions", "pending"]:
            raise ValueError(f"click_state v{schema.version} is not laid out as this writer assumes")

        def record_of(*names: str) -> Encoder:
            return compile_writer({"type": "record", "name": "Part", "fields": [fields[n] for n in names]})

        self._version = bytes((schema.version,))
        self._head = record_of("click", "expires_at")
        self._pending = record_of("pending")
        self._decision = compile_writer(fields["decisions"]["type"]["items"])

    def parts_of_bare(self, state: ClickState, raw: bytes) -> WrittenParts | None:
        """The parts of `raw`, the bytes `state` was read from, when it holds no decision and no postback.

        Then its bytes are the head and two empty arrays: a click's first postback (most clicks
        get one at most) re-uses the head instead of encoding the click again. Bytes of an
        older version of the state schema are not cut: their head is not this version's.
        """
        if (
            state["decisions"]
            or state["pending"]
            or raw[:1] != self._version
            or not raw.endswith(b"\x00\x00")
        ):
            return None
        return WrittenParts(state["click"], state["expires_at"], raw[:-2], (), (), (), b"")

    def dump(self, state: ClickState, last: WrittenParts | None) -> tuple[bytes, WrittenParts]:
        click, expires_at = state["click"], state["expires_at"]
        if last is not None and last.click is click and last.expires_at == expires_at:
            head = last.head
        else:
            head = self._version + self._head(state)
        decisions = state["decisions"]
        # Each decision's emitted count, and whether the first ones are the objects written last
        # time, in C loops: the state is written once per batch that touches it, and a loop in
        # Python over every decision of a click with many postbacks was a fifth of the decisions.
        counts = tuple(map(len, map(_emitted_of, decisions)))
        kept = 0 if last is None else len(last.decisions)
        if last is not None and kept <= len(decisions) and all(map(operator.is_, last.decisions, decisions)):
            if counts[:kept] == last.counts:  # only decisions appended: the body grows at its end
                added = tuple(map(self._decision, decisions[kept:]))
                encoded = last.encoded + added if added else last.encoded
                body = last.body + b"".join(added) if added else last.body
            else:  # an earlier decision emitted again: encode what changed, keep the rest
                fresh = list(last.encoded)
                for i in itertools.compress(range(kept), map(operator.ne, counts, last.counts)):
                    fresh[i] = self._decision(decisions[i])
                fresh += map(self._decision, decisions[kept:])
                encoded = tuple(fresh)
                body = b"".join(encoded)
        else:
            encoded = tuple(map(self._decision, decisions))
            body = b"".join(encoded)
        pending = self._pending(state) if state["pending"] else b"\x00"
        if decisions:  # an Avro array: one block (its count, its items), then the empty block
            raw = b"".join((head, encode_long(len(decisions)), body, b"\x00", pending))
        else:
            raw = b"".join((head, b"\x00", pending))
        parts = WrittenParts(click, expires_at, head, tuple(decisions), counts, encoded, body)
        return raw, parts

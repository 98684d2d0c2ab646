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

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas import CLICK_STATE, latest
from schemas.varint import encode_long
from schemas.writer import compile_writer
from stream.state import ClickState, Decision

Encoder = Callable[[Mapping[str, Any]], bytes]


@dataclass(frozen=True, slots=True)
class WrittenParts:
    """What the last write of a state was made of, for the next write of the same state."""

    click: Any  # the state's click dict then (compared by identity)
    expires_at: int
    head: bytes  # the version byte, the click and the expiry, encoded
    decisions: tuple[tuple[Decision, int, bytes], ...]  # each decision, its emitted count, its bytes


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
        return WrittenParts(state["click"], state["expires_at"], raw[:-2], ())

    def dump(self, state: ClickState, last: WrittenParts | None) -> tuple[bytes, WrittenParts]:
        click, expires_at = state["click"], state["expires_at"]
        if last is not None and last.click is click and last.expires_at == expires_at:
            head = last.head
        else:
            head = self._version + self._head(state)
        before = last.decisions if last is not None else ()
        decisions = []
        for i, decision in enumerate(state["decisions"]):
            emitted = len(decision["emitted"])
            if i < len(before) and before[i][0] is decision and before[i][1] == emitted:
                decisions.append(before[i])
            else:
                decisions.append((decision, emitted, self._decision(decision)))
        parts = [head]
        if decisions:  # an Avro array: one block (its count, its items), then the empty block
            parts.append(encode_long(len(decisions)))
            parts += [encoded for _, _, encoded in decisions]
        parts.append(b"\x00")
        parts.append(self._pending(state) if state["pending"] else b"\x00")
        return b"".join(parts), WrittenParts(click, expires_at, head, tuple(decisions))

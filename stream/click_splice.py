"""A new click's table state cut from the click's own Avro bytes, without decoding and re-encoding it.

Why. Clicks outnumber postbacks 10 to 100 times, and almost every click is new: its
state is the click's fields, an expiry and two empty lists. Decoding the click record
with fastavro and encoding the state back cost most of the click path, to copy fields
that are already encoded: Avro writes a record as its fields' encodings one after the
other, so the state's click part is a selection of the click record's field spans,
in the same order (`STATE_CLICK_FIELDS`; the state leaves out `referrer` and `extra`).

`ClickSplicer` reads the spans of one writer version of the click schema (strings,
longs, nullable strings, maps of strings: what the click schema holds; any other type
and the splicer declines the version) and checks, when it is built, that the state's
click record keeps those fields with the same types. Its `splice` is generated source
for that version, the fields' reads one after the other with no loop and no dispatch
on the field's type (as schemas/codegen.py does for whole records): a loop over the
fields spent more on choosing each field's read than on reading it, on the path every
click takes. `tests/unit/stream/test_click_splice.py`
holds the spliced state to fastavro's encoding of the same state, byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from schemas.varint import Truncated, read_long


def _skip_string(buf: bytes, pos: int) -> int:
    size, pos = read_long(buf, pos)
    end = pos + size
    if size < 0 or end > len(buf):
        raise Truncated("string runs past the end")
    return end


def _skip_string_map(buf: bytes, pos: int) -> int:
    while True:
        count, pos = read_long(buf, pos)
        if count == 0:
            return pos
        if count < 0:  # a block with its byte size first
            count = -count
            _, pos = read_long(buf, pos)
        for _ in range(count):
            pos = _skip_string(buf, _skip_string(buf, pos))


_STRING, _LONG, _OPTIONAL, _MAP = range(4)


def _kind(kind: Any) -> int | None:
    """How `splice` reads a field of this type; None: a type it does not read."""
    if kind == "string":
        return _STRING
    if kind == "long" or (isinstance(kind, Mapping) and kind.get("type") == "long"):
        return _LONG
    if isinstance(kind, list) and len(kind) == 2 and kind[0] == "null" and kind[1] == "string":
        return _OPTIONAL
    if isinstance(kind, Mapping) and kind.get("type") == "map" and kind.get("values") == "string":
        return _MAP
    return None


def _plain(kind: Any) -> Any:
    """A field type without its logical type (timestamp-millis is a long on the wire)."""
    if isinstance(kind, Mapping) and kind.get("type") == "long":
        return "long"
    return kind


class ClickSplicer:
    """The state's click part from a click record's bytes, for one writer version of the click schema."""

    def __init__(
        self, click_schema: Mapping[str, Any], state_click: Mapping[str, Any], kept: Sequence[str]
    ) -> None:
        fields = click_schema["fields"]
        kinds = [_kind(field["type"]) for field in fields]
        names = [field["name"] for field in fields]
        if any(kind is None for kind in kinds):
            raise ValueError("the click schema has a field type the splicer does not read")
        state_types = {field["name"]: _plain(field["type"]) for field in state_click["fields"]}
        click_types = {field["name"]: _plain(field["type"]) for field in fields}
        if [field["name"] for field in state_click["fields"]] != list(kept):
            raise ValueError("the state's click fields are not the kept fields, in order")
        for name in kept:
            if name not in click_types or click_types[name] != state_types[name]:
                raise ValueError(f"click field {name!r} is not stored as the state stores it")
        order = [names.index(name) for name in kept]
        if order != sorted(order):
            raise ValueError("the kept fields are not in the click schema's order")
        runs: list[tuple[int, int]] = []  # kept fields as runs of consecutive fields: one slice each
        for index in order:
            if runs and runs[-1][1] == index - 1:
                runs[-1] = (runs[-1][0], index)
            else:
                runs.append((index, index))
        at = (names.index("click_id"), names.index("clicked_at"), names.index("offer_id"))
        self.splice: Callable[[bytes], tuple[str, int, str, bytes]] = _compile(
            [kind for kind in kinds if kind is not None], runs, at
        )
        """(click_id, clicked_at, offer_id, the state's click record encoded); Truncated if not a click."""


def _compile(kinds: list[int], runs: list[tuple[int, int]], at: tuple[int, int, int]) -> Any:
    """The splice function for fields of these kinds: generated source, one block of reads a field.

    A length below 8,192 or a union branch is one or two bytes (the usual case here), read
    inline, as is a long's extent; anything longer goes through `read_long`. Bytes that end
    early raise IndexError inside, turned into Truncated, as are bytes left over after the
    last field.
    """
    needed = {first for first, _ in runs} | {last + 1 for _, last in runs} | set(at) | {at[0] + 1, at[2] + 1}
    lines = ["def splice(value):", "    p = 0", "    try:"]

    def string(indent: str) -> None:
        lines.extend(
            [
                f"{indent}b = value[p]",
                f"{indent}if b < 0x80 and not b & 1:",
                f"{indent}    p += 1 + (b >> 1)",
                f"{indent}elif b >= 0x80 and value[p + 1] < 0x80 and not b & 1:",  # 64 to 8191 bytes
                f"{indent}    p += 2 + ((b & 0x7F | value[p + 1] << 7) >> 1)",
                f"{indent}else:",
                f"{indent}    p = _skip_string(value, p)",
            ]
        )

    for index, kind in enumerate(kinds):
        if index in needed:
            lines.append(f"        s{index} = p")
        if kind == _STRING:
            string("        ")
        elif kind == _LONG:  # its bytes skipped: a timestamp is six, so no call to read one
            lines += [
                "        p += 1",
                "        if value[p - 1] >= 0x80:",
                "            q = p + 9",
                "            while value[p] >= 0x80:",
                "                p += 1",
                "            p += 1",
                "            if p > q:",
                "                raise Truncated('varint longer than 64 bits')",
            ]
        elif kind == _MAP:
            lines += [
                "        if value[p] == 0:",  # an empty map: the usual one
                "            p += 1",
                "        else:",
                "            p = _skip_string_map(value, p)",
            ]
        else:  # _OPTIONAL
            lines += [
                "        b = value[p]",
                "        if b == 0:",
                "            p += 1",
                "        elif b == 2:",
            ]
            lines.append("            p += 1")
            string("            ")
            lines += ["        else:", "            raise Truncated(f'union branch byte {b}')"]
    if len(kinds) in needed:
        lines.append(f"        s{len(kinds)} = p")
    lines += [
        "    except IndexError:",
        "        raise Truncated('the click record runs past the end') from None",
        "    if p != len(value):",
        "        raise Truncated('a string runs past the end' if p > len(value) else 'bytes left over')",
        "    kept = " + " + ".join(f"value[s{first}:s{last + 1}]" for first, last in runs),
        f"    click_id = _string_at(value, s{at[0]}, s{at[0] + 1})",
        f"    offer_id = _string_at(value, s{at[2]}, s{at[2] + 1})",
        f"    return click_id, read_long(value, s{at[1]})[0], offer_id, kept",
    ]
    namespace: dict[str, Any] = {
        "Truncated": Truncated,
        "read_long": read_long,
        "_skip_string": _skip_string,
        "_skip_string_map": _skip_string_map,
        "_string_at": _string_at,
    }
    exec(compile("\n".join(lines), "<click splicer>", "exec"), namespace)  # our own source, from the schema
    return namespace["splice"]


def _string_at(buf: bytes, pos: int, end: int) -> str:
    """The string whose encoding spans buf[pos:end] (the splice has already found where it ends)."""
    start = pos + 1 if buf[pos] < 0x80 else read_long(buf, pos)[1]
    return buf[start:end].decode()

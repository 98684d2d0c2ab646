"""Python source built line by line and compiled once: the codec's generated readers and writers.

Why generated source. A codec made of one closure per field pays, for every field of every
record, a Python call, a `(value, pos)` tuple and a loop over a table of fields: on the
stream's hot path that was most of the Avro codec's time. Source written for one schema
(as `dataclasses`, `namedtuple` and `fastjsonschema` do) runs each field as a few straight
lines in one function: local variables instead of calls, the common one-byte varint as one
comparison. It is built and `exec`-ed once per schema, when the codec is made.

Hygiene. Nothing from a schema's text is written into the source as it stands: field names
and map keys enter only as `repr()` string literals, numbers only after `int()`, and any other
object (defaults, decimal contexts, helper functions) is bound in the function's globals under a
generated name (`const`). Local variables are generated too (`var`). A schema nested beyond what
Python's compiler takes raises NotImplementedError, the codec's signal to keep fastavro.
"""

from __future__ import annotations

import json
import linecache
from collections.abc import Callable
from typing import Any

_BUILT: dict[tuple[str, str], Any] = {}


def once(kind: str, schema: Any, make: Callable[[], Any]) -> Any:
    """`make()`, built once per kind and schema text in a process (codecs are made per worker, per
    rebalance, per test): the functions hold no state, and linecache keeps one copy of each source."""
    key = (kind, json.dumps(schema, sort_keys=True))
    if key not in _BUILT:
        _BUILT[key] = make()
    return _BUILT[key]


class Source:
    """Lines of one generated function, the globals it reads, and fresh names for both."""

    def __init__(self, **helpers: Any) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = dict(helpers)
        self._count = 0

    def var(self, prefix: str = "v") -> str:
        """A local variable name no other part of the function uses."""
        self._count += 1
        return f"{prefix}{self._count}"

    def const(self, value: Any) -> str:
        """A global name bound to `value` (never written into the source as text)."""
        self._count += 1
        name = f"_c{self._count}"
        self.names[name] = value
        return name

    def line(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def build(self, name: str) -> Any:
        """Compile the lines and return the function they define as `name`."""
        text = "\n".join(self.lines) + "\n"
        namespace = dict(self.names)
        filename = f"<avro codec {name} {id(self)}>"
        try:
            code = compile(text, filename, "exec")
        except (SyntaxError, RecursionError, MemoryError) as exc:  # e.g. "too many statically nested blocks"
            raise NotImplementedError(f"schema too deep to generate: {exc}") from exc
        # Tracebacks and profilers show the generated lines, as for dataclasses' methods.
        linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
        exec(code, namespace)  # our own source, built from generated identifiers and reprs only
        return namespace[name]

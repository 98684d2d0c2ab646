"""What the SQL endpoint must know of a query's text before the engine runs it.

The engine enforces read-only itself (`readonly=1`: no writes, DDL, SYSTEM, settings
changes, nor table functions that read files or URLs). An embedded engine runs as
ClickHouse's *local* application, though, which lets three things through that a
ClickHouse server's HTTP interface never runs: several statements in one request,
`SELECT ... INTO OUTFILE` (a write to this machine's disk) and `KILL` (which would stop
the sink's own inserts). Those are found here on tokens -- strings, quoted names and
comments skipped -- never by a pattern over the raw text, so `SELECT 'KILL'` passes.
The same tokens give the query's own `FORMAT` clause, which the answer's headers name.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

# Strings, quoted identifiers, comments, words, numbers, single punctuation, in that order.
_TOKEN = re.compile(
    r"""
    (?P<skip>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*"|`(?:[^`\\]|\\.)*`
       |--[^\n]*|\#[^\n]*|/\*.*?\*/|\s+)
    |(?P<word>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A ClickHouse error code, its name and message, as ClickHouse would give them."""

    code: int
    name: str
    message: str


def _tokens(sql: str) -> list[str]:
    """Words (as spelled) and punctuation, without strings, quoted names or comments."""
    return [m.group() for m in _TOKEN.finditer(sql) if m.lastgroup != "skip"]


def _statements(tokens: list[str]) -> list[list[str]]:
    statements: list[list[str]] = [[]]
    for token in tokens:
        if token == ";":
            statements.append([])
        else:
            statements[-1].append(token)
    return [s for s in statements if s]


def check(sql: str) -> Refusal | None:
    """None when the engine may run `sql`; else the refusal ClickHouse's server would give."""
    statements = _statements(_tokens(sql))
    if not statements:
        return Refusal(62, "SYNTAX_ERROR", "Empty query")
    if len(statements) > 1:
        return Refusal(62, "SYNTAX_ERROR", "Multi-statements are not allowed")
    tokens = [t.upper() for t in statements[0]]
    if tokens[0] == "KILL" or any(a == "INTO" and b == "OUTFILE" for a, b in itertools.pairwise(tokens)):
        return Refusal(164, "READONLY", "Cannot execute query in readonly mode")
    return None


def output_format(sql: str) -> str | None:
    """The format named by the query's own top-level `FORMAT` clause, if any (as spelled)."""
    depth = 0
    found: str | None = None
    tokens = _tokens(sql)
    for i, token in enumerate(tokens):
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        elif token.upper() == "FORMAT" and depth == 0 and i + 1 < len(tokens) and tokens[i + 1][0].isalpha():
            found = tokens[i + 1]
    return found

"""`postbacks report` / `postbacks sql` output formats: what a shell pipeline or a spreadsheet reads."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

from sinks.report import render

COLUMNS = ["offer", "conversions", "note"]
ROWS = [("o1", 3, 'said "hi"\nthen left'), ("o2", 0, None)]


def test_csv_has_unix_line_ends_no_blank_last_line_and_reads_back() -> None:
    text = render(COLUMNS, ROWS, "csv")
    assert "\r" not in text and not text.endswith("\n")
    printed = text + "\n"  # what print() writes
    assert list(csv.reader(io.StringIO(printed))) == [
        COLUMNS,
        ["o1", "3", 'said "hi"\nthen left'],
        ["o2", "0", ""],
    ]


def test_json_is_one_object_per_row() -> None:
    assert json.loads(render(["usd"], [(Decimal("1.50"),)], "json")) == [{"usd": "1.50"}]


def test_table_aligns_columns_under_a_rule() -> None:
    lines = render(["offer", "n"], [("o1", 12), ("long-offer", None)], "table").splitlines()
    assert lines == ["     offer   n", "----------  --", "        o1  12", "long-offer    "]

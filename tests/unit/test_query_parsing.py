"""The query parser's fast path gives exactly what the standard library's parse_qsl gives."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.parsing import Refusal, parse_query

# Separators, the characters that switch to the decoding path, and a spread of others.
ALPHABET = st.sampled_from(list("&==&ab_zé9.-;~ %+\x00日"))


def standard(text: str, max_params: int) -> list[tuple[str, str]]:
    return parse_qsl(
        text, keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=max_params
    )


@settings(max_examples=600, deadline=None)
@given(st.text(ALPHABET, max_size=40), st.integers(min_value=0, max_value=8))
def test_same_pairs_or_same_refusal_as_parse_qsl(text: str, max_params: int) -> None:
    try:
        expected = standard(text, max_params)
    except ValueError:
        with pytest.raises(Refusal):
            parse_query(text, max_params)
        return
    assert parse_query(text, max_params) == expected
    assert parse_query(text.encode(), max_params) == expected


def test_typical_postback_query() -> None:
    query = "clickid=abc&payout=1.5&&currency=EUR&flag&sub=a=b"
    assert parse_query(query, 200) == [
        ("clickid", "abc"),
        ("payout", "1.5"),
        ("currency", "EUR"),
        ("flag", ""),
        ("sub", "a=b"),
    ]
    with pytest.raises(Refusal) as refused:
        parse_query(query, 5)
    assert refused.value.reason == "too_many_parameters"

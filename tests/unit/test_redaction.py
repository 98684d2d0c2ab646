"""What a refused request leaves stored holds no secret, however the sender spelled its name.

The property: whatever spelling of a secret parameter's name the ingest's own parser reads
as that name (percent- or plus-encoded, any case, JSON escapes), its value is gone from the
redacted text, and the parameters around it are kept as they were.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from hypothesis import given
from hypothesis import strategies as st

from ingest.http import Redactor
from ingest.parsing import NormaliseRules, normalise_postback
from ingest.sources import ALWAYS_SECRET, parse_sources

REDACT = Redactor(ALWAYS_SECRET | {"security_token"})
VALUES = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=16, max_size=40)


@st.composite
def query_spelling(draw: st.DrawFn, name: str) -> str:
    """`name` as a sender's URL encoder might write it: each character as is, in upper case, or %XX."""
    out = []
    for char in name:
        form = draw(st.sampled_from(["plain", "upper", "percent"]))
        out.append(char.upper() if form == "upper" else f"%{ord(char):02X}" if form == "percent" else char)
    return "".join(out)


@st.composite
def json_spelling(draw: st.DrawFn, name: str) -> str:
    """`name` as a JSON string literal, each character as is or as a \\u escape."""
    return "".join(char if draw(st.booleans()) else f"\\u{ord(char):04x}" for char in name)


@given(st.data(), st.sampled_from(sorted(ALWAYS_SECRET | {"security_token"})), VALUES)
def test_a_secret_in_any_query_spelling_is_redacted(data: st.DataObject, name: str, value: str) -> None:
    spelled = data.draw(query_spelling(name))
    query = f"clickid=c1&{spelled}={value}&payout=1.5"
    assert [n.lower() for n, _ in parse_qsl(query)][1] == name  # the parser reads it as the secret
    redacted = REDACT(query)
    assert value not in redacted
    assert redacted == f"clickid=c1&{spelled}=REDACTED&payout=1.5"


@given(st.data(), st.sampled_from(sorted(ALWAYS_SECRET)), VALUES)
def test_a_secret_in_any_json_spelling_is_redacted(data: st.DataObject, name: str, value: str) -> None:
    spelled = data.draw(json_spelling(name))
    body = f'{{"clickid": "c1", "{spelled}": "{value}", "payout": 2}}'
    assert name in json.loads(body)
    redacted = REDACT(body)
    assert value not in redacted
    assert json.loads(redacted) == {"clickid": "c1", name: "REDACTED", "payout": 2}


def test_other_parameters_and_lookalike_names_are_kept() -> None:
    text = "tokens=keep1&my_token=keep2&sub1=tok&token_id=keep3&clickid=abc"
    assert REDACT(text) == text
    assert REDACT('{"tokens": "keep", "sub": "token"}') == '{"tokens": "keep", "sub": "token"}'


def test_configured_secrets_are_scrubbed_wherever_they_stand() -> None:
    registry = parse_sources(
        {
            "sources": {
                "a": {"auth": "token", "tokens": ["tok-AAAAAAAAAAAAAAAA"]},
                "b": {"auth": "hmac", "hmac_secrets": ["key-BBBBBBBBBBBBBBBB"]},
            }
        }
    )
    redact = Redactor(registry.secret_params, registry.secret_values)
    text = "sub1=tok-AAAAAAAAAAAAAAAA&path=/postback/key-BBBBBBBBBBBBBBBB&clickid=1"
    assert redact(text) == "sub1=REDACTED&path=/postback/REDACTED&clickid=1"


def test_a_secret_name_in_another_case_never_reaches_the_record() -> None:
    rules = NormaliseRules({"clickid": "click_id"}, {}, frozenset({"token"}))
    record = normalise_postback(
        [("clickid", "c1"), ("Token", "s3cr3t"), ("TOKEN ", "x"), ("sub", "v")], rules, 0
    )
    assert record["extra"] == {"sub": "v"}

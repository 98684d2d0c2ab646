"""Templates: macros filled from a conversion, encoded for where they land; unknown macros refused."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from outbound.templates import MACROS, UnknownMacroError, compile_template, macro_values
from tests.unit.outbound.conftest import make_conversion


def test_url_template_renders_every_documented_macro(conversion: dict[str, Any]) -> None:
    template = compile_template(
        "https://pub.example/pb?cid={clickid}&p={payout}&cur={currency}&e={event_name}&s={status}"
        "&tx={txid}&cmp={campaign_id}&t={timestamp}&k={idempotency_key}"
    )
    url = template.render(macro_values(conversion, "KEY"))
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query == {
        "cid": "PUB-77",
        "p": "1.5",
        "cur": "EUR",
        "e": "purchase",
        "s": "approved",
        "tx": "T1",
        "cmp": "cmp",
        "t": str((conversion["conversion_time"]) // 1000),
        "k": "KEY",
    }
    assert template.macros == {
        "clickid", "payout", "currency", "event_name", "status", "txid", "campaign_id", "timestamp",
        "idempotency_key",
    }  # fmt: skip


def test_values_are_percent_encoded_and_cannot_add_parameters() -> None:
    values = macro_values(make_conversion(pub_click_id="a b&payout=1000#x/é", sub1="ü?"), "K")
    url = compile_template("https://pub.example/pb/{sub1}?cid={clickid}").render(values)
    assert url == "https://pub.example/pb/%C3%BC%3F?cid=a%20b%26payout%3D1000%23x%2F%C3%A9"
    parsed = parse_qs(urlsplit(url).query)
    assert parsed == {"cid": ["a b&payout=1000#x/é"]}
    assert urlsplit(url).path == "/pb/%C3%BC%3F"


def test_json_body_values_are_json_escaped_and_json_braces_stay_literal() -> None:
    template = compile_template('{"click": "{clickid}", "amount": {payout}, "meta": {"s": "{sub1}"}}', "json")
    body = template.render(macro_values(make_conversion(pub_click_id='x"}, "evil": "1', sub1="\n"), "K"))
    assert json.loads(body) == {"click": 'x"}, "evil": "1', "amount": 1.5, "meta": {"s": "\n"}}


def test_unknown_macro_is_named() -> None:
    with pytest.raises(UnknownMacroError, match=r"unknown macro \{clikid\}") as info:
        compile_template("https://pub.example/?c={clikid}&p={payout}")
    assert info.value.macro == "clikid"
    assert "clickid" in str(info.value)  # the known ones are listed


def test_missing_values_render_empty_and_no_payout_is_zero_usd() -> None:
    values = macro_values(
        make_conversion(payout=None, payout_currency=None, transaction_id=None, sub2=None), "K"
    )
    assert (values["payout"], values["currency"], values["txid"], values["sub2"]) == ("0", "USD", "", "")


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        ("1.500000", "1.5"),
        ("2.000000", "2"),
        ("100.000000", "100"),
        ("0.000000", "0"),
        ("0.000001", "0.000001"),
    ],
)
def test_amounts_are_plain_decimals(amount: str, text: str) -> None:
    assert macro_values(make_conversion(payout=Decimal(amount)), "K")["payout"] == text


def test_every_macro_has_a_value() -> None:
    assert set(macro_values(make_conversion(), "K")) == set(MACROS)

"""Vendors' documented postback URLs normalise to the canonical record, field by field."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from ingest.aliases import STATUS_PRESETS, build_alias_map
from ingest.parsing import NormaliseRules, Refusal, normalise_postback, parse_query
from ingest.sources import ALWAYS_SECRET

NOW_MS = 1_763_900_000_000  # 2025-11-23


def normalise(preset: str, query: str) -> dict[str, Any]:
    rules = NormaliseRules(build_alias_map(preset, {}), STATUS_PRESETS[preset], ALWAYS_SECRET)
    return normalise_postback(parse_query(query, 200), rules, NOW_MS)


def test_appsflyer_in_app_event_with_event_value_json() -> None:
    record = normalise(
        "appsflyer",
        "clickid=abc123&advertising_id=38400000-8cf0-11bd-b23e-10b96e40000d&idfa=&event_name=af_purchase"
        "&event_revenue=9.99&event_revenue_currency=eur"
        "&event_value=%7B%22af_revenue%22%3A%229.99%22%2C%22af_content_id%22%3A%22sku1%22%7D"
        "&install_unix_ts=1700000000&event_time=2023-11-14%2022%3A15%3A00.123&site_id=pub42&country_code=de"
        "&device_ip=203.0.113.9&is_retargeting=false&is_attributed=true&app_id=com.example.game"
        "&platform=android&blocked_reason=&af_siteid=legacy",
    )
    assert record["click_id"] == "abc123"
    assert record["gaid"] == "38400000-8cf0-11bd-b23e-10b96e40000d"
    assert record["idfa"] is None  # unfilled macro
    assert record["event_name"] == "af_purchase"
    assert record["revenue"] == Decimal("9.990000")
    assert record["currency"] == "EUR"
    assert record["event_value"] == '{"af_revenue":"9.99","af_content_id":"sku1"}'
    assert record["install_time"] == 1_700_000_000_000
    assert record["event_time"] == 1_700_000_100_123  # 2023-11-14 22:15:00.123 UTC
    assert record["site_id"] == "pub42"
    assert record["country_code"] == "DE"
    assert record["device_ip"] == "203.0.113.9"
    assert record["is_retargeting"] is False
    assert record["is_attributed"] is True
    assert record["app_id"] == "com.example.game"
    assert record["platform"] == "android"
    assert record["blocked_reason"] is None
    assert record["extra"] == {"af_siteid": "legacy"}


def test_appsflyer_blocked_install_keeps_reason() -> None:
    record = normalise("appsflyer", "clickid=c1&blocked_reason=click_flood&blocked_sub_reason=ctit_anomaly")
    assert (record["blocked_reason"], record["blocked_sub_reason"]) == ("click_flood", "ctit_anomaly")


def test_keitaro_subid_tid_and_status_words() -> None:
    record = normalise("keitaro", "subid=k9f3&status=sale&payout=2.5&currency=usd&tid=T-1")
    assert record["click_id"] == "k9f3"
    assert record["transaction_id"] == "T-1"
    assert record["status"] == "approved"
    assert record["payout"] == Decimal("2.5")
    assert record["currency"] == "USD"


def test_voluum_cid_txid_et() -> None:
    record = normalise("voluum", "cid=VOL-1&payout=3.00&txid=TX9&et=upsell")
    assert (record["click_id"], record["transaction_id"], record["event_name"]) == ("VOL-1", "TX9", "upsell")
    assert record["currency"] == "USD"  # amounts without currency are USD


def test_everflow_transaction_id_is_the_click_id() -> None:
    record = normalise("everflow", "nid=123&transaction_id=abcdef&amount=49.90&order_id=ORD1&adv_event_id=5")
    assert record["click_id"] == "abcdef"
    assert record["revenue"] == Decimal("49.90")
    assert record["transaction_id"] == "ORD1"
    assert record["goal"] == "5"
    assert record["extra"] == {"nid": "123"}


def test_everflow_security_token_is_never_stored() -> None:
    record = normalise("everflow", "transaction_id=abc&security_token=s3cr3t-s3cr3t-s3cr3t")
    assert "security_token" not in record["extra"]
    assert "s3cr3t-s3cr3t-s3cr3t" not in repr(record)


def test_tune_adv_sub() -> None:
    record = normalise("tune", "transaction_id=102abc&adv_sub=ORDER5&amount=12")
    assert (record["click_id"], record["transaction_id"], record["revenue"]) == (
        "102abc",
        "ORDER5",
        Decimal(12),
    )


@pytest.mark.parametrize(
    ("code", "status"), [("1", "approved"), ("2", "pending"), ("3", "rejected"), ("5", "hold")]
)
def test_affise_numeric_statuses(code: str, status: str) -> None:
    record = normalise("affise", f"clickid=xyz&action_id=A1&goal=2&sum=10&status={code}")
    assert record["status"] == status
    assert (record["action_id"], record["goal"], record["revenue"]) == ("A1", "2", Decimal(10))


def test_generic_ip_and_ua() -> None:
    record = normalise("generic", "click_id=g1&revenue=1&ip=198.51.100.7&ua=Mozilla%2F5.0")
    assert (record["device_ip"], record["user_agent"]) == ("198.51.100.7", "Mozilla/5.0")


def test_source_overrides_alias() -> None:
    rules = NormaliseRules(build_alias_map("generic", {"ord": "transaction_id"}), STATUS_PRESETS["generic"])
    record = normalise_postback([("clickid", "c"), ("ord", "O-7")], rules, NOW_MS)
    assert record["transaction_id"] == "O-7"


@pytest.mark.parametrize(
    ("query", "reason", "field"),
    [
        ("payout=1", "missing_click_id", "click_id"),
        ("clickid=", "missing_click_id", "click_id"),
        ("clickid=a%20b", "bad_click_id", "click_id"),
        ("clickid=c&payout=abc", "bad_number", "payout"),
        ("clickid=c&payout=NaN", "bad_number", "payout"),
        ("clickid=c&payout=Infinity", "bad_number", "payout"),
        ("clickid=c&payout=1e309", "bad_number", "payout"),
        ("clickid=c&payout=-1", "bad_number", "payout"),
        ("clickid=c&payout=1&currency=XYZ", "unknown_currency", "currency"),
        ("clickid=c&event_time=yesterday", "bad_time", "event_time"),
        ("clickid=c&event_time=100", "bad_time", "event_time"),
        ("clickid=c&event_value=%7Bbad", "malformed_event_value", "event_value"),
        ("clickid=c&event_value=42", "malformed_event_value", "event_value"),
        ("clickid=c&is_retargeting=maybe", "bad_boolean", "is_retargeting"),
        ("clickid=c&country_code=Germany", "bad_country", "country_code"),
        ("clickid=c&status=teleported", "bad_status", "status"),
        ("clickid=c&clickid=d", "repeated_parameter", "clickid"),
        ("clickid=c&click_id=d", "repeated_parameter", "click_id"),
        ("clickid=c&sub1=a%0D%0ASet-Cookie:x", "bad_value", "sub1"),
    ],
)
def test_refusals_name_reason_and_field(query: str, reason: str, field: str) -> None:
    with pytest.raises(Refusal) as caught:
        normalise("generic", query)
    assert (caught.value.reason, caught.value.field, caught.value.status) == (reason, field, 400)


def test_deeply_nested_event_value_is_refused_before_parsing() -> None:
    with pytest.raises(Refusal) as caught:
        normalise("generic", "clickid=c&event_value=" + "%5B" * 10_000)
    assert caught.value.reason in {"malformed_event_value", "value_too_long"}


def test_invalid_utf8_and_parameter_floods() -> None:
    with pytest.raises(Refusal) as caught:
        parse_query(b"clickid=%ff%fe", 200)
    assert caught.value.reason == "invalid_encoding"
    with pytest.raises(Refusal) as caught:
        parse_query("&".join(f"p{i}=1" for i in range(300)), 200)
    assert caught.value.reason == "too_many_parameters"


def test_amounts_keep_six_decimals_exactly() -> None:
    record = normalise("generic", "clickid=c&payout=0.1234564&revenue=1000000")
    assert record["payout"] == Decimal("0.123456")
    assert record["revenue"] == Decimal("1000000.000000")

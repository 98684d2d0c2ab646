"""The [publishers.<id>] tables: parsed, inherited, and every mistake refused at start with its place."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from ingest.sources import ConfigError, parse_sources
from outbound.config import parse_publishers

EXAMPLE = """
default_source = "default"
[sources.default]
auth = "token"
tokens = ["0123456789abcdef0123"]

[publishers.p1]
url = "https://pub.example/pb?cid={clickid}&p={payout}&c={currency}"
statuses = ["approved", "rejected"]
hmac_secret = "0123456789abcdef-secret"
concurrency = 4
timeout_s = 2.5
max_age_s = 3600

[[publishers.p1.overrides]]
offer_id = "o2"
url = "https://pub.example/offer2?cid={clickid}"

[[publishers.p1.overrides]]
event_name = "install"
statuses = []

[[publishers.p1.overrides]]
offer_id = "o2"
event_name = "purchase"
method = "POST"
content_type = "application/json"
body = '{"cid": "{clickid}", "amount": {payout}}'

[publishers."sub-net"]
url = "http://subnet.example/postback/{clickid}"
method = "POST"
body = "tx={txid}&status={status}"
headers = { Authorization = "Bearer abc" }
resend_uncertain = false
"""


def parse(text: str) -> Any:
    return parse_publishers(tomllib.loads(text), "sources.toml")


def test_the_example_parses_and_ingest_ignores_the_publishers() -> None:
    publishers = parse(EXAMPLE)
    assert set(publishers) == {"p1", "sub-net"}
    p1 = publishers["p1"]
    assert (p1.concurrency, p1.timeout_s, p1.max_age_s, p1.max_attempts) == (4, 2.5, 3600.0, None)
    assert p1.default.statuses == {"approved", "rejected"} and p1.default.method == "GET"
    sub = publishers["sub-net"]
    assert sub.default.body is not None and sub.default.content_type == "application/x-www-form-urlencoded"
    assert sub.default.headers == (("Authorization", "Bearer abc"),) and sub.resend_uncertain is False
    assert sub.default.statuses == {"approved"}  # the default: approved only
    assert set(parse_sources(tomllib.loads(EXAMPLE)).sources) == {"default"}


def test_the_most_specific_override_wins_and_inherits_the_rest() -> None:
    p1 = parse(EXAMPLE)["p1"]
    offer2 = p1.postback_for("o2", "registration")
    assert offer2.url.text.startswith("https://pub.example/offer2")
    assert offer2.statuses == {"approved", "rejected"}  # inherited
    both = p1.postback_for("o2", "purchase")
    assert both.method == "POST" and both.body is not None and both.body.encoding == "json"
    assert p1.postback_for("o1", "install").statuses == frozenset()  # installs are not passed on
    assert p1.postback_for("o2", "install").url.text.startswith("https://pub.example/offer2")  # offer > event
    assert p1.postback_for("o1", "purchase") is p1.default


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('url = "https://p.example/?c={clikid}"', r"publishers\.px\.url: unknown macro \{clikid\}"),
        (
            'url = "https://p.example/"\nbody = "x={sub9}"\nmethod = "POST"',
            r"px\.body: unknown macro \{sub9\}",
        ),
        ('url = "https://p.example/"\nstatues = ["approved"]', r"unknown key\(s\) \['statues'\]"),
        ('url = "https://{sub1}.example/"', "macros are not allowed in the scheme or host"),
        ('url = "https://p.example{clickid}/"', "macros are not allowed in the scheme or host"),
        ('url = "ftp://p.example/"', "must be an http"),
        ('url = "https://p.example/"\nbody = "x=1"', r"a body needs method = \"POST\""),
        ('url = "https://p.example/"\nmethod = "PUT"', "method must be GET or POST"),
        ('url = "https://p.example/"\nstatuses = ["paid"]', r"unknown \['paid'\]"),
        ('url = "https://p.example/"\nhmac_secret = "short"', "at least 16 characters"),
        ('url = "https://p.example/"\nconcurrency = 0', "concurrency: must be a positive whole number"),
        ('url = "https://p.example/"\ntimeout_s = "5"', "timeout_s: must be a positive number"),
        ('url = "https://p.example/"\nheaders = { Idempotency-Key = "x" }', "set by the sender itself"),
        ('method = "GET"', "url is required"),
        ('url = "https://p.example/"\n[[publishers.px.overrides]]\nurl = "https://p.example/2"', "offer_id"),
    ],
)
def test_mistakes_fail_with_the_publisher_and_the_key(table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse(f"[publishers.px]\n{table}\n")
    assert "sources.toml: publishers.px" in str(info.value)


def test_no_publishers_is_nothing_to_send() -> None:
    assert parse('[sources.x]\nauth = "none"\n') == {}


def test_outbound_settings_are_checked_by_name() -> None:
    from postbacks.settings import Settings, SettingsError

    assert Settings.from_env({"OUTBOUND_CONCURRENCY": "3"}).outbound_concurrency == 3
    with pytest.raises(SettingsError, match="OUTBOUND_CONCURRENCY"):
        Settings.from_env({"OUTBOUND_CONCURRENCY": "0"})
    with pytest.raises(SettingsError, match="OUTBOUND_PAUSE_S"):
        Settings.from_env({"OUTBOUND_PAUSE_S": "-1"})


def test_an_age_longer_than_the_states_are_kept_is_refused() -> None:
    from outbound.service import check_ages
    from postbacks.settings import Settings

    publishers = parse('[publishers.px]\nurl = "https://p.example/"\nmax_age_s = 400000\n')
    with pytest.raises(ConfigError, match=r"publishers\.px\.max_age_s"):
        check_ages(Settings(), publishers)
    with pytest.raises(ConfigError, match="OUTBOUND_MAX_AGE_S"):
        check_ages(Settings(outbound_max_age_s=400_000), {})
    check_ages(Settings(), parse('[publishers.px]\nurl = "https://p.example/"\nmax_age_s = 3600\n'))


def test_the_command_stops_at_a_bad_template_naming_it(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from commands.cli import main

    sources = tmp_path / "sources.toml"
    sources.write_text('[publishers.px]\nurl = "https://p.example/?c={clikid}"\n')
    monkeypatch.setenv("SOURCES_FILE", str(sources))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # never reached
    assert main(["outbound"]) == 2
    assert "publishers.px.url: unknown macro {clikid}" in capsys.readouterr().err

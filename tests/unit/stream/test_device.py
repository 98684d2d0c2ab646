"""Device fields from user agents: the fast resolver is installed, and the cache changes no answer."""

from __future__ import annotations

import ua_parser

from stream.rules import device

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"


def test_the_rust_resolver_parses_unseen_user_agents() -> None:
    """Without ua-parser[regex] a user agent not seen before costs ~30x as much (stream/rules/device.py)."""
    assert device.resolver() == "regex"


def test_a_cached_answer_is_the_parsers_and_a_fresh_dict_each_time() -> None:
    first = device.describe(IPHONE)
    assert first == {
        "device_family": "iPhone",
        "os_family": "iOS",
        "os_version": "17.1",
        "browser_family": "Mobile Safari UI/WKWebView",
    }
    first["os_family"] = "changed by a caller"
    assert device.describe(IPHONE)["os_family"] == "iOS"
    assert device.describe(None) == dict.fromkeys(device.FIELDS)
    assert device.describe("") == dict.fromkeys(device.FIELDS)


def test_the_resolver_without_ua_parsers_cache_answers_as_ua_parser_parse() -> None:
    """The resolver is called directly (no second cache in front): same answers as `ua_parser.parse`."""
    agents = [
        IPHONE,
        "Dalvik/2.1.0 (Linux; U; Android 13; Redmi Note 8 MIUI/V12.0.3.0)",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0 Safari/537.36",
        "Mozilla/5.0 (Linux; Android 9; SM-G960F) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/99.0 Mobile Safari/537.36",
        "curl/8.4.0",
        "not a user agent at all",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.1 Safari/605.1.15",
    ]
    for agent in agents:
        parsed = ua_parser.parse(agent)
        major = parsed.os.major if parsed.os else None
        minor = parsed.os.minor if parsed.os else None
        assert device.describe(agent) == {
            "device_family": parsed.device.family if parsed.device else None,
            "os_family": parsed.os.family if parsed.os else None,
            "os_version": ".".join(p for p in (major, minor) if p) if major else None,
            "browser_family": parsed.user_agent.family if parsed.user_agent else None,
        }, agent

"""Device fields from user agents: the fast resolver is installed, and the cache changes no answer."""

from __future__ import annotations

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

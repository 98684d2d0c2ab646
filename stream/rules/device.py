"""Device, OS and browser from a user agent (ua-parser with its maintained regexes).

Parsing runs only for conversions, never per click, and is cached here per distinct user agent
(a few thousand are most of any platform's traffic): a hit on ua-parser's own cache cost twice
as much. The cache holds 32,768 (~15 MiB with the bench's user agents, keys included, measured):
with 8,192, a working set of user agents a little larger than it (the bench's 12,000, met in
click order) missed on every conversion, and parsing was a seventh of the worker's CPU. A user
agent not seen before goes through ua-parser's Rust resolver (the `ua-parser[regex]` extra,
ua-parser-rs): ~0.07 ms against ~2.3 ms for its pure-Python regexes, which at a platform's variety
of user agents would cap a worker at a few hundred conversions a second. Country comes from the
sender's `country_code`: no maintained GeoIP database ships on PyPI (geoip2fast's data stopped
in 2024, MaxMind needs a licence download), so IP-to-country is left to the sender and said so.
"""

from __future__ import annotations

from functools import cache, lru_cache

import ua_parser
from ua_parser import Domain, PartialResult, Resolver

FIELDS = ("device_family", "os_family", "os_version", "browser_family")


def resolver() -> str:
    """Which of ua-parser's resolvers parses here: "regex" (Rust) is what the pipeline ships with."""
    return "regex" if ua_parser.RegexResolver is not None else "re2" if ua_parser.Re2Resolver else "basic"


def warm_up() -> None:
    """Compile ua-parser's regexes now (it does so on first use: a second or two of one core).

    Called when a stream worker starts, so its first conversion does not wait on it.
    """
    describe("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36")


def describe(user_agent: str | None) -> dict[str, str | None]:
    """The four device fields of a conversion (a new dict each call: callers may change it)."""
    return dict(zip(FIELDS, _parsed(user_agent or None), strict=True))


@cache
def _best_resolver() -> Resolver:
    """ua-parser's best resolver without its own cache in front (ours is per user agent, above).

    `ua_parser.parse` puts a 2,000-entry cache before the resolver: every user agent not seen
    before paid for an insert there too (a fifth of a miss's cost), and ours answers the hits.
    The regexes are the ones `ua_parser.parse` loads (lazily compiled by the Rust and re2 resolvers).
    """
    compiled_lazily = ua_parser.RegexResolver is not None or ua_parser.Re2Resolver is not None
    matchers = ua_parser.load_lazy_builtins() if compiled_lazily else ua_parser.load_builtins()
    return ua_parser.BestAvailableResolver(matchers)


@lru_cache(maxsize=32_768)
def _parsed(user_agent: str | None) -> tuple[str | None, str | None, str | None, str | None]:
    if not user_agent:
        return (None, None, None, None)
    result: PartialResult = _best_resolver()(user_agent, Domain.ALL)
    os_version = None
    if result.os and result.os.major:
        os_version = ".".join(p for p in (result.os.major, result.os.minor) if p)
    return (
        result.device.family if result.device else None,
        result.os.family if result.os else None,
        os_version,
        result.user_agent.family if result.user_agent else None,
    )
